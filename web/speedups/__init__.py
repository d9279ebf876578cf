"""Pure speedups of the Connexion/Flask stack: each gives the same answers as stock Connexion with less CPU.

They are switched on or off as a whole by APP_SPEEDUPS (on by default); `Speedups` also turns them on one
at a time for bench/paired.py, which measures what each gives (bench/RESULTS.md, tuning log). Several rely
on a library's internals; docs/library-internals.md lists each touch with the test that fails if an
upgrade moves it. Behaviour (every failing field, limits, injection, transactions) lives elsewhere and
does not depend on these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Speedups:
    """Which speedups are on."""

    bridge: bool = True
    """Flask behind web/speedups/bridge.py (one hand-off each way) instead of a2wsgi's streaming WSGIMiddleware."""
    decorate_once: bool = True
    """Each handler decorated once per operation instead of on every request (web/speedups/decorate_once.py)."""
    validation_precheck: bool = True
    """Request documents pre-checked by code fastjsonschema compiles; jsonschema only for those it refuses."""
    bindings_once: bool = True
    """A handler's injected parameters read once, not by `call_with_injection` per call (web/speedups/injection.py)."""
    orjson: bool = True
    """Connexion's Jsonifier on orjson instead of the standard library's json (web/speedups/json.py)."""
    gc_freeze: bool = True
    """What start-up built moved out of the garbage collector's sight (`gc.freeze()`), for the p99."""

    @classmethod
    def all_on(cls) -> Speedups:
        """Every speedup."""
        return cls()

    @classmethod
    def all_off(cls) -> Speedups:
        """None: Connexion, Flask-Injector and jsonschema as they come."""
        return cls(**{field.name: False for field in dataclasses.fields(cls)})

    @classmethod
    def switched(cls, on: bool) -> Speedups:
        """All on, or all off (APP_SPEEDUPS)."""
        return cls.all_on() if on else cls.all_off()
