"""Production entry point: apply migrations, then serve `app:app` with uvicorn worker processes."""

from __future__ import annotations

import functools
import logging
import logging.config
import os
import shutil
import signal
import sys

import uvicorn

from observability.logs import logging_config
from observability.multiprocess import DeadProcessReaper, prepare_metrics_dir
from observability.tracing import TracingConfigurationError, exporters_from_env
from providers.database import migrate
from settings import ConfigurationError, Settings
from web.server_protocol import BoundedHttpToolsProtocol

logger = logging.getLogger("serve")


def main() -> int:
    """Read the settings, migrate the database and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        # Checked here, once, so a bad value stops the start; each worker then sets up its own tracing (app.py).
        tracing_exporters = exporters_from_env(os.environ)
    except (ConfigurationError, TracingConfigurationError) as error:
        logger.error("%s", error)
        return 2
    logging.config.dictConfig(logging_config(settings.log_format))
    metrics_dir, created = prepare_metrics_dir(os.environ, settings.workers)
    reaper = DeadProcessReaper(metrics_dir) if metrics_dir is not None and settings.workers > 1 else None
    try:
        migrate(settings.database_url, configure_logging=False)
        if not settings.api_keys and settings.oauth is None:
            logger.warning("APP_API_KEYS is empty and no token issuer is configured (APP_OAUTH_ISSUER): "
                           "every write (POST, PATCH, DELETE) will be refused with 401.")
        elif not settings.api_keys and settings.oauth is not None:
            logger.info("APP_API_KEYS is empty: writes need a bearer token from %s", settings.oauth.issuer)
        logger.info(
            "Serving on http://%s:%s/ (Swagger UI at /ui/, metrics at /metrics) with %d worker(s), tracing %s; metrics files in %s",
            settings.address, settings.port, settings.workers,
            f"to {', '.join(tracing_exporters)}" if tracing_exporters else "off",
            metrics_dir or "none (one process counts for itself)",
        )
        if reaper is not None:
            reaper.start()
        signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
        uvicorn.run(
            "app:app",
            host=settings.address,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # httptools with the request head bounded (APP_MAX_HEADER_BYTES, through uvicorn's own setting for h11),
            # the time to read a request bounded (APP_REQUEST_HEAD/BODY_TIMEOUT_SECONDS; uvicorn calls the class
            # with keyword arguments only, and a partial of it reaches spawned workers by pickle) and problem
            # documents for requests it cannot parse.
            http=functools.partial(  # type: ignore[arg-type]
                BoundedHttpToolsProtocol,
                head_timeout=settings.request_head_timeout_seconds,
                body_timeout=settings.request_body_timeout_seconds,
            ),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            # The service speaks no WebSocket: upgrade requests reach the app as plain HTTP and get a 400
            # problem (web.framing.NoProtocolUpgrades) rather than a handshake the app cannot finish.
            ws="none",
            proxy_headers=True,
            access_log=False,  # observability.telemetry writes the access log, with the request id and operationId
            log_config=logging_config(settings.log_format),
            # On SIGTERM: stop accepting, finish the requests in flight (long polls answer at once), then
            # the app's lifespan closes the pool; requests still running after this long are cancelled.
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        )
    finally:
        if reaper is not None:
            reaper.stop()
        if created and metrics_dir is not None:
            # A supervisor (workers > 1) returns here after SIGTERM; a lone worker gets no directory of its own.
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _exit_after_graceful_shutdown(_number: int, _frame) -> None:
    # While it serves, uvicorn handles SIGTERM itself (a graceful shutdown). Afterwards it raises the
    # signal again for the handler it found, and with the default one a process that stopped cleanly
    # would end "killed by SIGTERM". This one makes it a normal exit, status 0. (With several workers
    # uvicorn's supervisor handles the signal in this process and exits normally anyway.)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
