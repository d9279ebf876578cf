"""Production entry point: apply migrations, then serve `app:app` with uvicorn worker processes."""

from __future__ import annotations

import copy
import logging
import signal
import sys

import uvicorn
import uvicorn.config

from providers.database import migrate
from settings import ConfigurationError, Settings

logger = logging.getLogger("serve")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    """Read the settings, migrate the database and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
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
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    uvicorn.run(
        "app:app",
        host=settings.address,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        access_log=False,
        log_config=log_config(),
        # On SIGTERM: stop accepting, finish the requests in flight (long polls answer at once), then
        # the app's lifespan closes the pool; requests still running after this long are cancelled.
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
    return 0


def log_config() -> dict:
    """Return uvicorn's logging configuration plus the service's own loggers (the root) at INFO on stderr.

    uvicorn applies it in every worker process. Without it a worker has no handler for the service's
    loggers: Python's last resort prints warnings alone, so an outage's end (an info line) went unseen;
    and in the main process the migrations' logging configuration (alembic.ini) leaves the root at WARNING.
    """
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["service"] = {"format": LOG_FORMAT}
    config["handlers"]["service"] = {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["service"], "level": "INFO"}
    return config


def _exit_after_graceful_shutdown(_number: int, _frame) -> None:
    # While it serves, uvicorn handles SIGTERM itself (a graceful shutdown). Afterwards it raises the
    # signal again for the handler it found, and with the default one a process that stopped cleanly
    # would end "killed by SIGTERM". This one makes it a normal exit, status 0. (With several workers
    # uvicorn's supervisor handles the signal in this process and exits normally anyway.)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
