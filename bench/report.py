"""Turn one benchmark run (plain data from bench/run.py) into bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("service", "floor", "stock")
LOG_HEADING = "## Tuning log"
HISTORY_HEADING = "## Run history"
# Sections other tools own in the same file (bench/avro_vs_json.py): carried over untouched.
FOREIGN_BLOCK = re.compile(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", re.DOTALL)

# Targets against the floor per scenario: (minimum req/s ratio, maximum p99 ratio or None).
FLOOR_TARGETS = {"get_room": (0.8, 2.0), "get_room_avro": (0.8, 2.0), "search_city": (0.8, 2.0),
                 "create_room": (0.7, None)}
STOCK_TARGET = 1.5  # minimum req/s ratio against stock Connexion, every scenario


def machine_facts() -> dict:
    """Return what the numbers depend on: cores, memory, CPU model, kernel, Python, wrk, commit, date."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")

    def command(*args: str) -> str:
        return subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": command("wrk", "-v").split(" Copyright")[0],
        "commit": command("git", "rev-parse", "HEAD") or "unknown",
        "dirty": bool(command("git", "status", "--porcelain", "--untracked-files=no")),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }


def summarise(rounds: list[dict]) -> dict:
    """Return the medians over rounds (throughput, p50, p99, CPU per request) and the error count."""
    def per_request(key: str) -> float:
        return statistics.median(1000 * r[key] / max(r["requests"], 1) for r in rounds)

    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_ms": statistics.median(r["p50_us"] for r in rounds) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in rounds) / 1000,
        "cpu_ms_per_request": per_request("cpu_seconds"),
        "db_cpu_ms_per_request": per_request("db_cpu_seconds"),
        "errors": sum(sum(r["errors"].values()) for r in rounds),
        "rps_rounds": [round(r["rps"]) for r in rounds],
        "other_cores_max": max(r["other_cores"] for r in rounds),
    }


def _ratio(value: float, reference: float, minimum: float | None = None, maximum: float | None = None) -> str:
    ratio = value / reference if reference else float("nan")
    if minimum is not None:
        return f"**{ratio:.2f}×** (≥ {minimum}) {'✓' if ratio >= minimum else '✗'}"
    if maximum is not None:
        return f"{ratio:.2f}× (≤ {maximum}) {'✓' if ratio <= maximum else '✗'}"
    return f"{ratio:.2f}×"


def render_table(run: dict) -> list[str]:
    """Return the one table of a run: per scenario req/s, latency and CPU of the three stacks and the ratios,
    then memory per worker and cold start."""
    summary = run["summary"]
    lines = [
        "| scenario | | service | floor | stock | service / floor (target) | service / stock (target) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in run["scenarios"]:
        s = summary[scenario["name"]]
        service = s["service"]
        min_floor, max_p99 = FLOOR_TARGETS.get(scenario["name"], (None, None))
        lines += [
            f"| {scenario['title']} | req/s | " + " | ".join(f"{s[t]['rps']:,.0f}" for t in STACKS)
            + f" | {_ratio(service['rps'], s['floor']['rps'], min_floor)}"
            f" | {_ratio(service['rps'], s['stock']['rps'], STOCK_TARGET)} |",
            "| | p50 / p99 ms | " + " | ".join(f"{s[t]['p50_ms']:.1f} / {s[t]['p99_ms']:.1f}" for t in STACKS)
            + f" | p99 {_ratio(service['p99_ms'], s['floor']['p99_ms'], maximum=max_p99)}"
            f" | p99 {_ratio(service['p99_ms'], s['stock']['p99_ms'])} |",
            "| | CPU ms/req: app + DB | "
            + " | ".join(f"{s[t]['cpu_ms_per_request']:.2f} + {s[t]['db_cpu_ms_per_request']:.2f}" for t in STACKS)
            + "".join(f" | app {_ratio(service['cpu_ms_per_request'], s[t]['cpu_ms_per_request'])}"
                      for t in ("floor", "stock")) + " |",
        ]
    memory, cold = run["memory"], run["cold_start"]
    for group, label, key in (("memory", "PSS per worker (MiB)", "pss"), ("", "RSS per worker (MiB)", "rss")):
        lines.append(f"| {group} | {label} | "
                     + " | ".join(", ".join(f"{w.get(key, 0) / 1024:.0f}" for w in memory[t]["workers"]) for t in STACKS)
                     + " | | |")
    lines.append("| cold start | s to the first 200, median (all) | "
                 + " | ".join(f"{statistics.median(cold[t]):.2f} ({', '.join(f'{c:.2f}' for c in cold[t])})"
                              for t in STACKS) + " | | |")
    return lines


def render_results(run: dict, previous_text: str | None) -> str:
    """Return the markdown report: this run's table and profile, then the tuning log and run history carried over."""
    facts, options, summary = run["machine"], run["options"], run["summary"]
    names = [s["name"] for s in run["scenarios"]]
    errors = [f"{n} {t} {summary[n][t]['errors']}" for n in names for t in STACKS if summary[n][t]["errors"]]
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run.py` (see `bench/README.md`); the tuning log is edited by hand, the run history gains "
        "a line per run.",
        "",
        f"- **Date:** {facts['date']}; load average before the run {' '.join(facts['load_average'])}",
        f"- **Commit:** `{facts['commit']}`" + (" with uncommitted changes in tracked files" if facts["dirty"] else ""),
        f"- **Machine:** {facts['cores']} cores ({facts['cpu_model']}), {facts['memory_gib']} GiB memory, "
        f"Linux {facts['kernel']}, Python {facts['python']}, {facts['wrk']}",
        f"- **Load:** `wrk -t{options['threads']} -c{options['connections']} -d{options['duration']}s` on loopback; "
        f"{options['warmup']} s warm-up per scenario and stack, then {options['rounds']} round(s) in which the stacks "
        "take turns (order rotated every round); medians over rounds. wrk and PostgreSQL share the cores",
        f"- **Data:** {options['rooms']:,} rooms in {run['cities']} cities; {options['workers']} worker processes "
        f"per stack; database pool {options['pool_size']} (+ as much overflow) per worker",
        "- **Stacks:** service `python serve.py` (uvicorn `app:app`); floor "
        f"`gunicorn -k gthread --threads {run['floor_threads']} floor_app:app` (`bench/floor_app.py`: Flask + "
        "SQLAlchemy Core, no validation, no DI); stock `uvicorn bench.stock_app:app` (`bench/stock_app.py`: "
        "Connexion 3 FlaskApp with default settings, plain handlers). Floor and stock run the same SQL and "
        "answer the service's JSON (checked before the load)",
        "",
        *render_table(run),
        "",
        "App CPU: user + system CPU of the stack's processes during a round per request answered; DB: the same for "
        "PostgreSQL. CPU per request is steadier than req/s on a shared machine. "
        f"Errors (socket errors and non-2xx over all rounds): {', '.join(errors) or 'none'}. "
        "Other load (cores used by processes outside the benchmark, most in any round): "
        + ", ".join(f"{n} {max(summary[n][t]['other_cores_max'] for t in STACKS):.2f}" for n in names)
        + "; above ~0.2 someone else was using the machine. Req/s per round (service | floor | stock): "
        + "; ".join(f"{n} " + " | ".join(str(summary[n][t]["rps_rounds"]) for t in STACKS) for n in names) + ".",
    ]
    if run.get("profile"):
        lines += render_profile(run["profile"])
    previous_text = previous_text or ""
    for block in FOREIGN_BLOCK.finditer(previous_text):
        lines += ["", block.group(0)]
    lines += ["", *carried_sections(FOREIGN_BLOCK.sub("", previous_text), run)]
    return "\n".join(lines) + "\n"


def render_profile(profiles: dict) -> list[str]:
    """Return one table of the service's profile: a row per layer, a column per scenario."""
    names = list(profiles)
    layers = sorted({layer for p in profiles.values() for layer, _ in p["layers"]},
                    key=lambda layer: -sum(dict(p["layers"]).get(layer, 0) for p in profiles.values()))
    lines = [
        "",
        "## Where the service's time goes (py-spy)",
        "",
        "`py-spy record --gil --subprocesses` on the service's workers under load after the rounds: only the "
        "thread holding the GIL is sampled (Python work, not waits for PostgreSQL or the network). Each sample "
        "counts for the innermost frame outside the standard library, grouped by layer "
        "(`bench/profile_summary.py`); ms/req spreads the user CPU per request measured meanwhile over the "
        "layers. Modules and heaviest functions: `bench/profiles/<scenario>.summary.txt`.",
        "",
        "| layer: share, ≈ ms/req | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
        "| requests, samples | " + " | ".join(f"{p['requests']:,}, {p['samples']:,}" for p in profiles.values()) + " |",
        "| user + kernel CPU ms/req | "
        + " | ".join(f"{p['cpu_ms_per_request']:.2f} + {p['system_ms_per_request']:.2f}" for p in profiles.values())
        + " |",
    ]
    for layer in layers:
        cells = []
        for profile in profiles.values():
            share = dict(profile["layers"]).get(layer, 0)
            cells.append(f"{share:.0%}, {share * profile['cpu_ms_per_request']:.3f}" if share else "")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines


def carried_sections(previous_text: str, run: dict) -> list[str]:
    """Return the tuning log (kept from the previous file) and the run history with this run appended."""
    history: list[str] = []
    log: list[str] = []
    section = None
    for line in previous_text.splitlines():
        if line.startswith("## "):
            section = line.strip()
        elif section == HISTORY_HEADING and line.startswith("| ") and not line.startswith(("| date", "| ---")):
            history.append(line)
        elif section == LOG_HEADING:
            log.append(line)
    facts, options, summary = run["machine"], run["options"], run["summary"]

    def ratios(reference: str) -> str:
        return ", ".join(f"{s['name']} {summary[s['name']]['service']['rps'] / summary[s['name']][reference]['rps']:.2f}"
                         for s in run["scenarios"])

    other = max(summary[s["name"]][t]["other_cores_max"] for s in run["scenarios"] for t in STACKS)
    history.append(
        f"| {facts['date']} | `{facts['commit'][:10]}`{'+' if facts['dirty'] else ''} "
        f"| {options['rounds']}×{options['duration']} s, c{options['connections']} | {ratios('floor')} "
        f"| {ratios('stock')} | {other:.2f} |"
    )
    while log and not log[-1].strip():
        log.pop()
    while log and not log[0].strip():
        log.pop(0)
    return [
        LOG_HEADING,
        "",
        *(log or ["One line per change made to close the gap, with its measured effect."]),
        "",
        HISTORY_HEADING,
        "",
        "Req/s ratios of every run (`+`: uncommitted changes in the tree; other load: see above).",
        "",
        "| date | commit | load | service / floor | service / stock | other load |",
        "| --- | --- | --- | --- | --- | ---: |",
        *history,
    ]
