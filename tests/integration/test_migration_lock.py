"""Processes that migrate one PostgreSQL database at the same time take turns instead of failing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from providers.database import migration_heads
from tests.support.postgres import scratch_database

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
# Each process imports first, then waits for the same moment, so that their migrations really overlap.
MIGRATE = (
    "import sys, time; from providers.database import migrate; "
    "time.sleep(max(0, float(sys.argv[2]) - time.time())); migrate(sys.argv[1])"
)
START_AFTER_SECONDS = 5


def test_concurrent_migrations_of_an_empty_database_all_succeed(postgres_admin_url):
    with scratch_database(postgres_admin_url, "rooms_migration_race") as url:
        start_at = str(time.time() + START_AFTER_SECONDS)
        processes = [
            subprocess.Popen([sys.executable, "-c", MIGRATE, url, start_at], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(PROCESSES)
        ]
        outputs = [process.communicate(timeout=120)[0] for process in processes]
        assert [process.returncode for process in processes] == [0] * PROCESSES, "\n".join(outputs)
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        engine.dispose()
        assert frozenset(versions) == migration_heads()
