"""Summarise py-spy's collapsed stacks (`--format raw`): which library or app module the samples fall in.

Each sample is charged to the innermost frame that is not in the standard library, so a regex or a
`copy.deepcopy` run on behalf of jsonschema counts for jsonschema. Connexion and Starlette are split
by submodule (routing, security, validation, ...) because that is where the service differs from the
floor, and the components are grouped into the layers a request passes through.

    python bench/profile_summary.py bench/profiles/get_room.txt
"""

from __future__ import annotations

import re
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_STDLIB = sysconfig.get_paths()["stdlib"]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SPLIT_BY_SUBMODULE = {"connexion", "starlette", "sqlalchemy", "flask", "werkzeug"}

# Component prefix -> layer of the request path, outermost first; the first matching prefix wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("HTTP server: uvicorn, httptools, event loop", ("uvicorn", "httptools", "uvloop", "stdlib: runners",
                                                     "stdlib: base_events", "stdlib: events")),
    ("Connexion + Starlette ASGI middleware (routing, security, validation, context, docs)", (
        "connexion.middleware", "connexion.uri_parsing", "connexion.lifecycle", "connexion.security",
        "connexion.validators", "connexion.datastructures", "connexion.operations", "connexion.json_schema",
        "connexion.utils", "connexion.spec", "connexion.http_facts", "starlette", "jsonschema", "referencing",
        "rpds", "app: web.middleware", "app: web.validation", "app: web.security", "app: web.problems")),
    ("Thread-pool hop: anyio's worker threads (a2wsgi's under FlaskApp)", (
        "anyio", "sniffio", "a2wsgi", "stdlib: thread", "stdlib: threading", "stdlib: _base", "stdlib: futures",
        "stdlib: queue")),
    ("Connexion handler decorators, Werkzeug (and Flask under FlaskApp)", (
        "flask.", "flask_", "werkzeug", "connexion.", "blinker", "itsdangerous")),
    ("Dependency injection: injector, request scope", ("injector", "flask_injector", "app: web.injection",
                                                       "app: web.scope")),
    ("SQLAlchemy ORM session, SQL building and compiling", ("sqlalchemy.orm", "sqlalchemy.sql",
                                                           "sqlalchemy.event", "sqlalchemy.util", "sqlalchemy.log")),
    ("SQLAlchemy engine + pool + psycopg2 (driver calls holding the GIL)", ("sqlalchemy", "psycopg2")),
    ("App code: handlers, providers, transactions, JSON", ("app: ", "orjson")),
]
# flask_injector must not fall into "flask." nor injector into "flask_": checked before the generic prefixes.
_EXACT_LAYER = {"flask_injector": LAYERS[4][0], "injector": LAYERS[4][0]}


def layer_of(component: str, *, in_flask: bool = False) -> str:
    """Return the layer of the request path a component belongs to (`in_flask`: sampled inside Flask)."""
    if component in _EXACT_LAYER:
        return _EXACT_LAYER[component]
    if in_flask and component.startswith(("connexion.", "starlette")):
        # Connexion's helpers (utils, operations, datastructures) also run in its view decorators.
        return LAYERS[3][0]
    for layer, prefixes in LAYERS:
        if component.startswith(prefixes):
            return layer
    return "other"


@dataclass
class ProfileSummary:
    """Shares of the samples per component, and the heaviest functions (self and inclusive)."""

    samples: int
    requests: int
    cpu_ms_per_request: float
    system_ms_per_request: float
    components: list[tuple[str, float]]
    layers: list[tuple[str, float]]
    self_functions: list[tuple[str, float]]
    inclusive_functions: list[tuple[str, float]]

    def as_dict(self) -> dict:
        """Return the summary as plain data (for JSON)."""
        return {
            "samples": self.samples,
            "requests": self.requests,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "system_ms_per_request": self.system_ms_per_request,
            "components": self.components,
            "layers": self.layers,
            "self_functions": self.self_functions[:30],
            "inclusive_functions": self.inclusive_functions[:40],
        }

    def text(self) -> str:
        """Return a plain-text report."""
        out = [f"{self.samples} samples, {self.requests} requests, {self.cpu_ms_per_request:.3f} user CPU ms/request "
               f"(+ {self.system_ms_per_request:.3f} kernel)", ""]
        for title, rows in (("layer", self.layers), ("component", self.components), ("self (leaf function)", self.self_functions[:30]),
                            ("inclusive (function on the stack)", self.inclusive_functions[:40])):
            out.append(f"{title:70} share   ms/req")
            out += [f"{name[:70]:70} {share * 100:5.1f}%  {share * self.cpu_ms_per_request:.3f}" for name, share in rows]
            out.append("")
        return "\n".join(out)


def component_of(path: str) -> str | None:
    """Return the component a source file belongs to, or None for the standard library."""
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].split("/")
        package = parts[0].removesuffix(".py")
        if package in _SPLIT_BY_SUBMODULE and len(parts) > 1:
            return f"{package}.{parts[1].removesuffix('.py')}"
        return package
    if path.startswith(_STDLIB) or "/lib/python3" in path or path.startswith("<"):
        return None
    try:
        relative = Path(path).resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return path
    return "app: " + ".".join(relative.with_suffix("").parts)


def _parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


def summarise_collapsed(text: str, *, requests: int, cpu_ms_per_request: float,
                        system_ms_per_request: float = 0.0) -> ProfileSummary:
    """Aggregate collapsed stacks into component and function shares."""
    components: Counter[str] = Counter()
    self_functions: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse_frame(frame) for frame in stack.split(";")]
        frames = [(function, file) for function, file in frames if file]  # drops process and thread labels
        if not frames:
            continue
        total += count
        owner = next((c for _, file in reversed(frames) if (c := component_of(file)) is not None), None)
        if owner is None:
            owner = "stdlib: " + Path(frames[-1][1]).stem
        components[owner] += count
        in_flask = any(file.endswith("flask/app.py") for _, file in frames)
        layers[layer_of(owner, in_flask=in_flask)] += count
        function, file = frames[-1]
        self_functions[f"{function} ({_short(file)})"] += count
        for name in {f"{function} ({_short(file)})" for function, file in frames}:
            inclusive[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common()] if total else []

    return ProfileSummary(total, requests, cpu_ms_per_request, system_ms_per_request, shares(components), shares(layers),
                          shares(self_functions), shares(inclusive))


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return path.removeprefix(_STDLIB + "/")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(f"== {argument}", flush=True)
        print(summarise_collapsed(Path(argument).read_text(), requests=1, cpu_ms_per_request=1.0).text())
