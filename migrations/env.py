"""Alembic environment: runs the migrations online against the service's database."""

from alembic import context

from providers.database import Base, make_engine
from settings import Settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

database_url = config.attributes.get("database_url") or Settings.from_env().database_url


def run_migrations_online() -> None:
    """Apply the migrations in one transaction per revision."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
