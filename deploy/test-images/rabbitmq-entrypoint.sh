#!/bin/sh
# FOR THE TEST SUITE ONLY (deploy/test-images/build.sh): what compose.yaml uses of the official rabbitmq
# image's entry point. The default user comes from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (guest/guest),
# may log in from other hosts, and the broker runs as the rabbitmq user, as PID 1, its data in /var/lib/rabbitmq.
set -eu

if [ "${1:-rabbitmq-server}" != rabbitmq-server ]; then exec "$@"; fi

cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.default = 5672
loopback_users = none
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
log.console = true
log.file = false
CONF
mkdir -p /var/lib/rabbitmq /var/log/rabbitmq
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
export HOME=/var/lib/rabbitmq
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
