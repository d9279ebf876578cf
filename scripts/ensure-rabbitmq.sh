#!/usr/bin/env bash
# Make sure the RabbitMQ broker binaries exist for the test suite (tests/support/rabbitmq.py starts its own broker).
set -euo pipefail
source "$(dirname "$0")/lib/debian-packages.sh"

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
if [ -x "$SERVER" ]; then exit 0; fi
require_root "RabbitMQ ($SERVER)" rabbitmq-server
# Its post-install script fails the whole install if it cannot start the broker: install_packages forbids the start.
install_packages rabbitmq-server
# Should a service manager have started the packaged broker and its epmd anyway, stop them.
if ! stop_units rabbitmq-server.service epmd.socket epmd.service && pgrep -u rabbitmq > /dev/null; then
  /etc/init.d/rabbitmq-server stop > /dev/null 2>&1 || true
  pkill -u rabbitmq -x epmd || true
fi
[ -x "$SERVER" ] || { echo "rabbitmq-server was installed but $SERVER is still missing." >&2; exit 1; }
