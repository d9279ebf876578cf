"""Serve the service with bench-only patches, to measure a candidate change before anyone makes it.

`python bench/experiments.py` runs `serve.main()` unchanged except that the uvicorn workers import
`bench.experiments:app`, which applies the patches named in BENCH_EXPERIMENTS (comma-separated) and then
builds the app exactly as `app:app` would. `bench/run.py --experiment NAME` serves this as an extra
target next to the service and the floor, so the effect is measured in the same run.

Nothing here changes the app's files; every patch is a stand-in for a change to make in the app itself.
Patches whose change has been made in the app are removed; the tuning log in bench/RESULTS.md keeps
what they measured.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def no_outbox_lock() -> None:
    """Append outbox events without the advisory lock that serialises every writer until commit.

    Only to size the lock's cost: without it, positions no longer follow commit order (see
    providers/sql_events.py), so this is not a change to make as it stands.
    """
    from sqlalchemy import text

    import providers.sql_events as sql_events

    sql_events.LOCK_OUTBOX = text("SELECT 1")


def no_outbox() -> None:
    """Skip the outbox entirely (no lock, no Avro encoding, no event row): the whole cost of the event feed."""
    from providers.sql_events import SqlOutbox

    SqlOutbox.append = lambda self, *args, **kwargs: None


def no_gc_freeze() -> None:
    """Leave the start-up objects to the garbage collector (the app freezes them at start-up)."""
    import gc

    gc.freeze = lambda: None


def _handler_threads(count: int) -> Callable[[], None]:
    def patch() -> None:
        os.environ["APP_THREADS"] = str(count)

    patch.__doc__ = f"Run at most {count} handlers at once per worker (APP_THREADS={count}) instead of the default."
    return patch


PATCHES: dict[str, Callable[[], None]] = {
    "no_gc_freeze": no_gc_freeze,
    "threads_5": _handler_threads(5),
    "threads_10": _handler_threads(10),
    "threads_20": _handler_threads(20),
    "no_outbox_lock": no_outbox_lock,
    "no_outbox": no_outbox,
}


def selected() -> list[str]:
    """Return the patch names in BENCH_EXPERIMENTS, checked against PATCHES."""
    names = [name.strip() for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(PATCHES))
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(PATCHES)}")
    return names


def __getattr__(name: str):
    # The uvicorn workers import `bench.experiments:app`: patch first, then build the real app.
    if name == "app":
        for patch in selected():
            PATCHES[patch]()
        import app as app_module

        globals()["app"] = app_module.app
        return app_module.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> int:
    """Run serve.main() with the workers importing this module's patched app."""
    selected()
    import serve

    run = serve.uvicorn.run

    def run_patched(_target, **options):
        return run("bench.experiments:app", **options)

    serve.uvicorn.run = run_patched
    return serve.main()


if __name__ == "__main__":
    sys.exit(main())
