#!/usr/bin/env bash
# FOR THE TEST SUITE ONLY: builds stand-ins for public images from Debian's packages with mmdebstrap, because
# the project's machines reach no image registry (docs/deploy.md). Users build and run with the public images.
#   build.sh python-base TAG   python3 + venv: the Dockerfile's BASE_IMAGE (stands in for python:3.11-slim-bookworm)
#   build.sh postgres TAG      PostgreSQL 15 with an entry point like the official image's (stands in for postgres:15)
#   build.sh rabbitmq TAG      RabbitMQ with an entry point like the official image's (stands in for rabbitmq:3)
# Needs root, mmdebstrap and podman (scripts/ensure-podman.sh); podman reads CONTAINERS_CONF as usual.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="$1" tag="$2"

# No documentation, manual pages or translations, and no apt lists: they would only make the images bigger.
slim=(
  --variant=essential
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log'
)
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

case "$name" in
  python-base)
    # passwd: the Dockerfile's useradd; apt: its builder stage installs binutils (strip); both as on
    # python:3.11-slim-bookworm.
    mmdebstrap "${slim[@]}" --include=python3,python3-venv,ca-certificates,passwd,apt bookworm - \
      | podman import --change "ENV=PATH=$path" --change 'ENV=LANG=C.UTF-8' --change 'CMD=["python3"]' - "$tag"
    ;;
  postgres)
    mmdebstrap "${slim[@]}" --include=postgresql-15 \
      --customize-hook='rm -rf "$1"/var/lib/postgresql/15/main "$1"/etc/postgresql/15/main' \
      --customize-hook="upload $here/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
      --customize-hook='chmod 755 "$1"/usr/local/bin/docker-entrypoint.sh' \
      bookworm - \
      | podman import --change "ENV=PATH=/usr/lib/postgresql/15/bin:$path" --change 'ENV=LANG=C.UTF-8' \
          --change 'ENV=PGDATA=/var/lib/postgresql/data' --change 'EXPOSE=5432' --change 'STOPSIGNAL=SIGINT' \
          --change 'ENTRYPOINT=["docker-entrypoint.sh"]' --change 'CMD=["postgres"]' - "$tag"
    ;;
  rabbitmq)
    mmdebstrap "${slim[@]}" --include=rabbitmq-server \
      --customize-hook="upload $here/rabbitmq-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
      --customize-hook='chmod 755 "$1"/usr/local/bin/docker-entrypoint.sh' \
      bookworm - \
      | podman import --change "ENV=PATH=/usr/lib/rabbitmq/bin:$path" --change 'ENV=LANG=C.UTF-8' \
          --change 'ENV=HOME=/var/lib/rabbitmq' --change 'EXPOSE=5672' \
          --change 'ENTRYPOINT=["docker-entrypoint.sh"]' --change 'CMD=["rabbitmq-server"]' - "$tag"
    ;;
  *)
    echo "usage: $0 python-base|postgres|rabbitmq TAG" >&2
    exit 2
    ;;
esac
