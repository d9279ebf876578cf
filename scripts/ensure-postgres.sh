#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, postgres) exist for the test suite.
set -euo pipefail

if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries are missing: install Debian's 'postgresql' package or set PG_BIN." >&2
  exit 1
fi
echo "Installing PostgreSQL server binaries (apt-get install postgresql)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql > /dev/null
# The tests start their own throwaway cluster; the packaged one is not needed.
if command -v pg_ctlcluster > /dev/null; then
  for cluster in /etc/postgresql/*/main; do
    [ -d "$cluster" ] || continue
    version=$(basename "$(dirname "$cluster")")
    pg_ctlcluster "$version" main stop 2>/dev/null || true
  done
fi
