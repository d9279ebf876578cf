#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, postgres) exist for the test suite (tests/support/postgres.py
# starts its own throwaway cluster).
set -euo pipefail
source "$(dirname "$0")/lib/debian-packages.sh"

if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then exit 0; fi
require_root "PostgreSQL's server binaries (or PG_BIN)" postgresql
install_packages postgresql
# The packaged cluster is not needed.
if command -v pg_ctlcluster > /dev/null; then
  for cluster in /etc/postgresql/*/main; do
    [ -d "$cluster" ] || continue
    pg_ctlcluster "$(basename "$(dirname "$cluster")")" main stop 2>/dev/null || true
  done
fi
