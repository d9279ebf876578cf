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
LOG_HEADING = "## Tuning log"
HISTORY_HEADING = "## Run history"
# Sections other tools own in the same file (e.g. bench/avro_vs_json.py): carried over untouched.
FOREIGN_BLOCK = re.compile(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", re.DOTALL)

# Targets of issue 6 per scenario: (minimum throughput ratio, maximum p99 ratio or None).
TARGETS = {"get_room": (0.8, 2.0), "get_room_avro": (0.8, 2.0), "search_city": (0.8, 2.0), "create_room": (0.7, None)}


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


def render_results(run: dict, previous_text: str | None) -> str:
    """Return the markdown report: this run's tables, then the run history and tuning log carried over."""
    facts, options, summary = run["machine"], run["options"], run["summary"]
    targets = run["targets"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run.py` (see `bench/README.md`). The last two sections are kept across runs: "
        "the run history gains a line per run, and the tuning log is edited by hand.",
        "",
        f"- **Date:** {facts['date']}; load average before the run {' '.join(facts['load_average'])}",
        f"- **Commit:** `{facts['commit']}`" + (" with uncommitted changes in tracked files" if facts["dirty"] else ""),
        f"- **Machine:** {facts['cores']} cores ({facts['cpu_model']}), {facts['memory_gib']} GiB memory, "
        f"Linux {facts['kernel']}, Python {facts['python']}, {facts['wrk']}",
        f"- **Load:** `wrk -t{options['threads']} -c{options['connections']} -d{options['duration']}s` on loopback; "
        f"{options['warmup']} s warm-up per scenario and target, then {options['rounds']} rounds in which the "
        "targets take turns (order rotated every round); wrk and PostgreSQL run on the same cores",
        f"- **Data:** {options['rooms']:,} rooms in {run['cities']} cities, {options['items']:,} items; "
        f"{options['workers']} worker processes per target; database pool {options['pool_size']} "
        "(+ as much overflow) per worker",
        "- **Service:** `python serve.py` (uvicorn `app:app`, uvloop, httptools); **floor:** "
        f"`gunicorn -k {options['floor_worker_class']} --threads {options['floor_threads']} floor_app:app` "
        "(`bench/floor_app.py`: Flask + SQLAlchemy Core, same SQL and JSON, no validation, no DI)",
        "",
        "## Service against floor (medians over rounds)",
        "",
        "| scenario | service req/s | floor req/s | req/s ratio (target) | service p50 / p99 ms | floor p50 / p99 ms "
        "| p99 ratio (target) | app CPU ms/req service / floor | DB CPU ms/req service / floor | errors | other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in run["scenarios"]:
        service, floor = summary[scenario["name"]]["service"], summary[scenario["name"]]["floor"]
        min_ratio, max_p99 = TARGETS.get(scenario["name"], (None, None))
        ratio, p99_ratio = service["rps"] / floor["rps"], service["p99_ms"] / floor["p99_ms"]
        ratio_cell = f"**{ratio:.2f}×**" + (f" (≥ {min_ratio}) {'✓' if ratio >= min_ratio else '✗'}" if min_ratio else "")
        p99_cell = f"{p99_ratio:.2f}×" + (f" (≤ {max_p99}) {'✓' if p99_ratio <= max_p99 else '✗'}" if max_p99 else "")
        other = max(summary[scenario["name"]][target]["other_cores_max"] for target in targets)
        lines.append(
            f"| {scenario['title']} | {service['rps']:,.0f} | {floor['rps']:,.0f} | {ratio_cell} "
            f"| {service['p50_ms']:.1f} / {service['p99_ms']:.1f} | {floor['p50_ms']:.1f} / {floor['p99_ms']:.1f} "
            f"| {p99_cell} | {service['cpu_ms_per_request']:.2f} / {floor['cpu_ms_per_request']:.2f} "
            f"| {service['db_cpu_ms_per_request']:.2f} / {floor['db_cpu_ms_per_request']:.2f} "
            f"| {service['errors']} / {floor['errors']} | {other:.2f} |"
        )
    lines += [
        "",
        "Req/s of each round (service | floor): "
        + "; ".join(f"{s['name']} {summary[s['name']]['service']['rps_rounds']} | {summary[s['name']]['floor']['rps_rounds']}"
                    for s in run["scenarios"]) + ".",
        "",
        "App CPU ms/req is the user+system CPU of the target's processes (master and workers) during a round "
        "divided by the requests answered; DB CPU ms/req is the same for all PostgreSQL processes. On a "
        "shared machine CPU per request is steadier than req/s. Errors: wrk's socket errors and non-2xx "
        "answers over all rounds. Other load: the most CPU (in cores) used during any round of the scenario "
        "by processes outside the benchmark; above ~0.2 the machine was busy with something else and the "
        "absolute numbers are noisy (taking turns keeps the ratios fairer).",
    ]
    if "health" in summary:
        lines += render_ceiling(run)
    experiments = [t for t in targets if t not in ("service", "floor")]
    if experiments:
        lines += render_experiments(run, experiments)
    lines += render_memory(run)
    if run.get("profile"):
        lines += render_profile(run["profile"])
    previous_text = previous_text or ""
    for block in FOREIGN_BLOCK.finditer(previous_text):
        lines += ["", block.group(0)]
    lines += ["", *carried_sections(FOREIGN_BLOCK.sub("", previous_text), run)]
    return "\n".join(lines) + "\n"


def stack_ceiling(summary: dict, scenario: str) -> float:
    """Return the highest service/floor ratio a scenario can reach with the stack's extra CPU per request.

    The health check costs the service `extra` more CPU than the floor with no database and no handler
    work: the server, Connexion's middleware and its handler decorators. Were everything else as
    cheap as the floor's, a request would cost the floor's app and database CPU plus `extra`; with the
    cores saturated, throughput goes as the inverse of CPU per request.
    """
    health = summary["health"]
    extra = health["service"]["cpu_ms_per_request"] - health["floor"]["cpu_ms_per_request"]
    floor = summary[scenario]["floor"]
    floor_cpu = floor["cpu_ms_per_request"] + floor["db_cpu_ms_per_request"]
    return floor_cpu / (floor_cpu + extra)


def render_ceiling(run: dict) -> list[str]:
    """Return the section that bounds each ratio by what the stack costs on its own (the health scenario)."""
    summary = run["summary"]
    health = summary["health"]
    extra = health["service"]["cpu_ms_per_request"] - health["floor"]["cpu_ms_per_request"]
    lines = [
        "",
        "## What the stack alone allows",
        "",
        f"`GET /v1/health` touches no database and injects nothing, so it measures the serving stack itself: "
        f"uvicorn + Connexion 3's middleware and handler decorators cost "
        f"{health['service']['cpu_ms_per_request']:.2f} ms of CPU per request against "
        f"{health['floor']['cpu_ms_per_request']:.2f} ms for gunicorn + Flask, **{extra:.2f} ms more**, and the "
        f"health check serves {health['service']['rps'] / health['floor']['rps']:.2f}× the floor's requests. "
        "That extra is paid by every request before any of our code runs. The ceiling below is the ratio a "
        "scenario would reach if everything else (validation, injection, handler, SQL, encoding) cost exactly "
        "what the floor's does: floor CPU / (floor CPU + the stack's extra), with app and PostgreSQL CPU per "
        "request, which is what limits throughput when the cores are saturated.",
        "",
        "| scenario | measured ratio | ceiling with this stack | target |",
        "| --- | ---: | ---: | ---: |",
    ]
    for scenario in run["scenarios"]:
        name = scenario["name"]
        if name == "health":
            continue
        measured = summary[name]["service"]["rps"] / summary[name]["floor"]["rps"]
        target = TARGETS.get(name, (None, None))[0]
        lines.append(f"| {scenario['title']} | {measured:.2f}× | {stack_ceiling(summary, name):.2f}× "
                     f"| {f'≥ {target}' if target else ''} |")
    return lines


def render_experiments(run: dict, experiments: list[str]) -> list[str]:
    """Return the table of bench-only patched services (bench/experiments.py), measured in the same run."""
    lines = [
        "",
        "## Experiments (bench-only patches, same run)",
        "",
        "| scenario | target | req/s | vs service | vs floor | p50 / p99 ms | app CPU ms/req | DB CPU ms/req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in run["scenarios"]:
        per_target = run["summary"][scenario["name"]]
        service, floor = per_target["service"], per_target["floor"]
        for target in ["service", *experiments]:
            result = per_target[target]
            lines.append(
                f"| {scenario['title']} | {target} | {result['rps']:,.0f} | {result['rps'] / service['rps'] - 1:+.0%} "
                f"| {result['rps'] / floor['rps']:.2f}× | {result['p50_ms']:.1f} / {result['p99_ms']:.1f} "
                f"| {result['cpu_ms_per_request']:.2f} | {result['db_cpu_ms_per_request']:.2f} |"
            )
    return lines


def render_memory(run: dict) -> list[str]:
    """Return the memory and cold-start table, one column per target."""
    targets, memory, cold = run["targets"], run["memory"], run["cold_start"]
    lines = [
        "",
        "## Memory and cold start",
        "",
        "| | " + " | ".join(targets) + " |",
        "| --- |" + " ---: |" * len(targets),
    ]
    for label, key in (("RSS per worker after the run (MiB)", "rss"), ("PSS per worker after the run (MiB)", "pss")):
        cells = [", ".join(f"{worker.get(key, 0) / 1024:.0f}" for worker in memory[t]["workers"]) for t in targets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| RSS of the master process (MiB) | "
                 + " | ".join(f"{memory[t]['master']['rss'] / 1024:.0f}" for t in targets) + " |")
    lines.append("| cold start: process start → first 200 (s; median, all) | "
                 + " | ".join(f"{statistics.median(cold[t]):.2f} ({', '.join(f'{s:.2f}' for s in cold[t])})"
                              for t in targets) + " |")
    lines += [
        "",
        "PSS shares each page among the processes that map it: gunicorn forks its workers from a loaded "
        "master, uvicorn spawns fresh interpreters, so PSS is the fairer per-worker cost. The service's cold "
        "start includes `serve.py`'s migration check, spawning the workers and Connexion's first-request set-up.",
    ]
    return lines


def render_profile(profiles: dict) -> list[str]:
    """Return the per-scenario profile tables (layers of the service's stack)."""
    lines = [
        "",
        "## Where the service's time goes (py-spy)",
        "",
        "`py-spy record --gil --subprocesses` on the service's workers under the same load, after the "
        "measured rounds: only the thread holding the GIL is sampled, i.e. the Python work, not the waits "
        "for PostgreSQL or the network. Each sample is charged to the innermost frame outside the standard "
        "library and grouped into the layers a request passes through; ≈ ms/req spreads the *user* CPU per "
        "request measured during the profile over the layers in proportion (an estimate: C code running "
        "without the GIL is not sampled). Kernel CPU (sockets, epoll, futexes) is given separately. "
        "Per-module shares and the heaviest functions: `bench/profiles/<scenario>.summary.txt`.",
    ]
    for name, profile in profiles.items():
        lines += [
            "",
            f"**{name}**: {profile['requests']:,} requests, {profile['samples']:,} samples, "
            f"{profile['cpu_ms_per_request']:.2f} user + {profile['system_ms_per_request']:.2f} kernel "
            "app CPU ms/req",
            "",
            "| layer | share | ≈ ms/req |",
            "| --- | ---: | ---: |",
        ]
        for layer, share in profile["layers"]:
            lines.append(f"| {layer} | {share * 100:.1f}% | {share * profile['cpu_ms_per_request']:.3f} |")
    return lines


def carried_sections(previous_text: str | None, run: dict) -> list[str]:
    """Return the run history (this run appended) and the tuning log, both kept from the previous file."""
    history: list[str] = []
    log: list[str] = []
    section = None
    for line in (previous_text or "").splitlines():
        if line.startswith("## "):
            section = line.strip()
        elif section == HISTORY_HEADING and line.startswith("| ") and not line.startswith(("| date", "| ---")):
            history.append(line)
        elif section == LOG_HEADING:
            log.append(line)
    facts, options, summary = run["machine"], run["options"], run["summary"]
    ratios = ", ".join(
        f"{s['name']} {summary[s['name']]['service']['rps'] / summary[s['name']]['floor']['rps']:.2f}×"
        for s in run["scenarios"]
    )
    other = max(summary[s["name"]][t]["other_cores_max"] for s in run["scenarios"] for t in run["targets"])
    history.append(
        f"| {facts['date']} | `{facts['commit'][:10]}`{'+' if facts['dirty'] else ''} "
        f"| {options['rounds']}×{options['duration']} s, c{options['connections']} | {ratios} | {other:.2f} |"
    )
    while log and not log[-1].strip():
        log.pop()
    while log and not log[0].strip():
        log.pop(0)
    if not log:
        log = [
            "One row per change made to close the gap: the change, and the ratios of the runs before and",
            "after it (run history above; same machine and options).",
            "",
            "| date | step | effect (service/floor req/s ratios) |",
            "| --- | --- | --- |",
        ]
    return [
        HISTORY_HEADING,
        "",
        "Service/floor req/s ratio of every run (`+`: the tree had uncommitted changes; other load: see above).",
        "",
        "| date | commit | load | ratios | other load |",
        "| --- | --- | --- | --- | ---: |",
        *history,
        "",
        LOG_HEADING,
        "",
        *log,
    ]
