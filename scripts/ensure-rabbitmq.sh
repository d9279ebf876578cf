#!/usr/bin/env bash
# Make sure the RabbitMQ broker binaries exist for the test suite (tests/support/rabbitmq.py starts its own broker).
set -euo pipefail

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
if [ -x "$SERVER" ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "RabbitMQ is missing ($SERVER not found): install Debian's 'rabbitmq-server' package as root" \
       "(sudo apt-get install --no-install-recommends rabbitmq-server) or run 'make test' as root." >&2
  exit 1
fi

echo "Installing RabbitMQ (apt-get install rabbitmq-server)..."
export DEBIAN_FRONTEND=noninteractive

# The package's postinst runs `invoke-rc.d rabbitmq-server start` and fails the whole install if
# that start fails; a policy-rc.d answering 101 ("action forbidden") makes it skip the start.
# Container images usually ship one already; only add (and later remove) ours when there is none.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends rabbitmq-server > /dev/null

# Belt and braces: should a service manager have started the packaged broker anyway (systemd, or a
# machine without policy-rc.d but with a runlevel), stop it and its epmd; the tests never use them.
if [ "$(ps --no-headers -o comm 1)" = "systemd" ]; then
  systemctl stop rabbitmq-server.service epmd.socket epmd.service 2>/dev/null || true
  systemctl disable rabbitmq-server.service 2>/dev/null || true
elif pgrep -u rabbitmq > /dev/null; then
  /etc/init.d/rabbitmq-server stop > /dev/null 2>&1 || true
  pkill -u rabbitmq -x epmd || true
fi

[ -x "$SERVER" ] || { echo "rabbitmq-server was installed but $SERVER is still missing." >&2; exit 1; }
