"""Schema evolution: every current schema must be FULL_TRANSITIVE compatible with all its released versions.

Run `python -m contract.evolution check` (exit 1 and a report on failure) or
`python -m contract.evolution release` to record the current schemas as released versions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from contract.avro import HISTORY_DIR, SCHEMAS_DIR, crc64_fingerprint, expanded_schema, released_versions


@dataclass(frozen=True)
class Incompatibility:
    """One direction in which a current schema and a released version cannot read each other."""

    schema: str
    version: int
    direction: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.schema} v{self.version}: {self.direction}: at {self.location}: {self.reason}"


def _reads(reader: dict[str, Any], writer: dict[str, Any]) -> list[tuple[str, str]]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(  # type: ignore[no-untyped-call]
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    locations = sorted(result.locations) or ["/"]
    messages = sorted(result.messages) or ["incompatible"]
    return [(location, message) for location in locations for message in messages]


def full_transitive_incompatibilities(
    name: str, current: dict[str, Any], released: Iterable[tuple[int, dict[str, Any]]]
) -> list[Incompatibility]:
    """Return every way `current` fails to read, or be read by, each released version."""
    problems = []
    for version, old in released:
        for location, reason in _reads(current, old):
            problems.append(Incompatibility(name, version, "current reader cannot read old writer", location, reason))
        for location, reason in _reads(old, current):
            problems.append(Incompatibility(name, version, "old reader cannot read current writer", location, reason))
    return problems


def check(schemas_dir: Path = SCHEMAS_DIR, history_dir: Path = HISTORY_DIR) -> list[Incompatibility]:
    """Check every schema in `schemas_dir` against its history; return the incompatibilities found."""
    problems = []
    for path in sorted(schemas_dir.glob("*.avsc")):
        name = path.name.removesuffix(".avsc")
        problems += full_transitive_incompatibilities(name, expanded_schema(path), released_versions(name, history_dir))
    return problems


def release(schemas_dir: Path = SCHEMAS_DIR, history_dir: Path = HISTORY_DIR) -> list[str]:
    """Record every changed schema as its next released version; return what was written."""
    written = []
    for path in sorted(schemas_dir.glob("*.avsc")):
        name = path.name.removesuffix(".avsc")
        document = expanded_schema(path)
        history = released_versions(name, history_dir)
        if history and crc64_fingerprint(history[-1][1]) == crc64_fingerprint(document):
            continue
        version = history[-1][0] + 1 if history else 1
        target = history_dir / name / f"v{version}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(f"{name} v{version}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: `check` (default) or `release`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["check", "release"], default="check")
    args = parser.parse_args(argv)
    if args.command == "release":
        problems = check()
        if problems:
            print("Refusing to release incompatible schemas:", *map(str, problems), sep="\n  ", file=sys.stderr)
            return 1
        written = release()
        print("Released:", ", ".join(written) if written else "nothing changed")
        return 0
    problems = check()
    if problems:
        print(f"{len(problems)} FULL_TRANSITIVE incompatibilities:", *map(str, problems), sep="\n  ", file=sys.stderr)
        return 1
    print("All schemas are FULL_TRANSITIVE compatible with their released versions.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
