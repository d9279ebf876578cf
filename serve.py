"""Production entry point: apply migrations, then serve `app:app` with uvicorn worker processes."""

from __future__ import annotations

import logging
import sys

import uvicorn

from providers.database import migrate
from settings import ConfigurationError, Settings

logger = logging.getLogger("serve")


def main() -> int:
    """Read the settings, migrate the database and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except ConfigurationError as error:
        logger.error("%s", error)
        return 2
    migrate(settings.database_url)
    if not settings.api_keys:
        logger.warning("APP_API_KEYS is empty: every write (POST, PATCH, DELETE) will be refused with 401.")
    logger.info(
        "Serving on http://%s:%s/ (Swagger UI at /ui/) with %d worker(s)",
        settings.address, settings.port, settings.workers,
    )
    uvicorn.run(
        "app:app",
        host=settings.address,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
