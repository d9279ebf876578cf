#!/usr/bin/env bash
# Make sure nginx exists for the test suite (tests/support/nginx.py starts its own, unprivileged, on a free port).
set -euo pipefail
source "$(dirname "$0")/lib/debian-packages.sh"

NGINX=/usr/sbin/nginx
if [ -x "$NGINX" ]; then exit 0; fi
require_root "nginx ($NGINX)" nginx
install_packages nginx
# Should the packaged nginx have started anyway, stop it: the tests never use it.
if ! stop_units nginx.service && [ -e /run/nginx.pid ]; then
  "$NGINX" -s quit 2>/dev/null || true
fi
[ -x "$NGINX" ] || { echo "nginx was installed but $NGINX is still missing." >&2; exit 1; }
