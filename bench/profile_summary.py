"""Summarise py-spy's collapsed stacks (`--format raw`): which library or app module the samples fall in.

Each sample is charged to the innermost frame that is not in the standard library, so a regex or a
`copy.deepcopy` run on behalf of jsonschema counts for jsonschema. Components (Connexion, Starlette,
SQLAlchemy, Flask and Werkzeug split by submodule) are grouped into the layers a request passes through:
uvicorn, connexion, the WSGI bridge, injection, Flask/Werkzeug, SQLAlchemy, psycopg2 and the app's code.

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

# Layer of the request path -> component prefixes, outermost first; the first matching prefix wins, so
# flask_injector and the app's web.speedups.bridge / web.injection are claimed before "flask" and "app: web".
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn", ("uvicorn", "httptools", "uvloop", "h11", "stdlib: runners", "stdlib: base_events",
                 "stdlib: events", "stdlib: selector_events")),
    ("connexion (+ starlette, jsonschema)", ("connexion", "starlette", "jsonschema", "referencing", "rpds")),
    ("a2wsgi/bridge (web.speedups.bridge), thread hand-off", ("a2wsgi", "app: web.speedups.bridge", "anyio", "sniffio", "stdlib: thread",
                                                      "stdlib: threading", "stdlib: _base", "stdlib: queue")),
    ("flask_injector/injector", ("flask_injector", "injector", "app: web.injection", "app: web.scope")),
    ("flask/werkzeug", ("flask", "werkzeug", "blinker", "itsdangerous")),
    ("sqlalchemy", ("sqlalchemy",)),
    ("psycopg2", ("psycopg2",)),
    ("app code: web/", ("app: web.",)),
    ("app code: api/, providers/, contract/ (+ orjson, fastavro)", ("app: ", "orjson", "fastavro")),
]


def layer_of(component: str, *, in_flask: bool = False) -> str:
    """Return the layer of the request path a component belongs to (`in_flask` is accepted and ignored)."""
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
        """Return the totals and shares as plain data (functions: see `text`)."""
        return {
            "samples": self.samples,
            "requests": self.requests,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "system_ms_per_request": self.system_ms_per_request,
            "components": self.components,
            "layers": self.layers,
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
        layers[layer_of(owner)] += count
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
