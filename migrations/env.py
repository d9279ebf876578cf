"""Alembic environment: runs the migrations online against the service's database."""

from alembic import context
from sqlalchemy import text

from providers.database import Base, make_engine
from settings import Settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

database_url = config.attributes.get("database_url") or Settings.from_env().database_url

# Several processes may migrate one PostgreSQL database at once (a Kubernetes migration Job and the
# service's pods, which migrate on start too): the first takes this lock, the others wait for it and then
# find the revisions applied instead of failing on tables that already exist.
MIGRATION_LOCK_KEY = 0x726F6F6D73_6D  # "rooms" "m"; the outbox and the relay use other keys


def run_migrations_online() -> None:
    """Apply the migrations in one transaction per revision."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Before run_migrations reads the current revision, so a waiter reads it after the winner's commit.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


run_migrations_online()
