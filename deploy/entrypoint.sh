#!/bin/sh
# The image's entry point: `serve` (the default), `relay` or `migrate [REVISION]`; anything else runs as given.
# Each command is exec'd, so it is PID 1 and receives the container's SIGTERM itself.
set -eu
cd /app

# Without DATABASE_URL or APP_DB_HOST, settings.py would put SQLite inside the read-only code tree;
# use /data instead, so a bare `docker run` works (mount a volume at /data to keep the data).
if [ -z "${DATABASE_URL:-}" ] && [ -z "${APP_DB_HOST:-}" ]; then
  export DATABASE_URL="sqlite:////data/rooms.sqlite3"
  echo "rooms-entrypoint: neither DATABASE_URL nor APP_DB_HOST is set; using SQLite in /data/rooms.sqlite3" >&2
fi

# A database container started alongside this one may need a while: serve and migrate need it at once
# (both migrate first), so they wait up to APP_DB_WAIT_SECONDS for it to accept connections (0: do not wait).
# The relay needs no wait: it retries with backoff by itself.
wait_for_database() {
  python - <<'PY'
import os
import sys
import time

import sqlalchemy as sa

from settings import ConfigurationError, database_url_from_env

try:
    url = sa.engine.make_url(database_url_from_env(os.environ))
    limit = float(os.environ.get("APP_DB_WAIT_SECONDS") or 60)
except (ConfigurationError, ValueError, sa.exc.ArgumentError):
    sys.exit(0)  # the command itself reports the mistake, naming the variable
if url.get_backend_name() != "postgresql" or limit <= 0:
    sys.exit(0)
engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
deadline = time.monotonic() + limit
next_report = 0.0
while True:
    try:
        with engine.connect():
            sys.exit(0)
    except sa.exc.OperationalError as error:
        if time.monotonic() >= deadline:
            print(f"rooms-entrypoint: the database did not accept connections within {limit:g} s: {error.orig}",
                  file=sys.stderr)
            sys.exit(1)
        if time.monotonic() >= next_report:
            print(f"rooms-entrypoint: waiting for the database at {url.host}:{url.port or 5432}", file=sys.stderr)
            next_report = time.monotonic() + 5
        time.sleep(1)
PY
}

command="${1:-serve}"
[ "$#" -gt 0 ] && shift
case "$command" in
  serve)   wait_for_database; exec python serve.py "$@" ;;
  relay)   exec python relay.py "$@" ;;
  migrate) wait_for_database; exec alembic -c alembic.ini upgrade "${1:-head}" ;;
  *)       exec "$command" "$@" ;;
esac
