#!/usr/bin/env bash
# Make sure nginx exists for the test suite (tests/support/nginx.py starts its own, unprivileged, on a free port).
set -euo pipefail

NGINX=/usr/sbin/nginx
if [ -x "$NGINX" ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "nginx is missing ($NGINX not found): install Debian's 'nginx' package as root" \
       "(sudo apt-get install --no-install-recommends nginx) or run 'make test' as root." >&2
  exit 1
fi

echo "Installing nginx (apt-get install nginx)..."
export DEBIAN_FRONTEND=noninteractive

# The package's postinst starts the packaged nginx on port 80; a policy-rc.d answering 101
# ("action forbidden") makes it skip that. Container images usually ship one already; only add
# (and later remove) ours when there is none.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx > /dev/null

# Should a service manager have started the packaged nginx anyway, stop it: the tests never use it.
if [ "$(ps --no-headers -o comm 1)" = "systemd" ]; then
  systemctl stop nginx.service 2>/dev/null || true
  systemctl disable nginx.service 2>/dev/null || true
elif [ -e /run/nginx.pid ]; then
  "$NGINX" -s quit 2>/dev/null || true
fi

[ -x "$NGINX" ] || { echo "nginx was installed but $NGINX is still missing." >&2; exit 1; }
