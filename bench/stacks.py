"""How much the serving stack alone costs: `GET /v1/health` on plain Flask and on Connexion 3's two apps.

`bench/run.py` measures the service against a floor and bounds each ratio by what the service's stack
costs on a request that does nothing. This answers the follow-up question, which stack would raise that
bound, on the same machine in the same run, with no database:

- floor: plain Flask under gunicorn (`bench/floor_app.py`, as in run.py);
- the service itself (`serve.py`: uvicorn, Connexion FlaskApp, injection, the middleware of app.py);
- Connexion FlaskApp with nothing added (`bench/stack_apps.py`), under uvicorn as serve.py runs it;
- Connexion AsyncApp with a plain handler (run in a thread pool) and with an `async def` handler.

    .venv/bin/python bench/stacks.py      # about 3 minutes; writes bench/results/stacks.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.report import machine_facts  # noqa: E402
from bench.run import Scenario, Server, cpu_seconds, ensure_tools, exit_on_signals, run_wrk  # noqa: E402
from tests.postgres import free_port  # noqa: E402

# (target, what it is, how to start it given a port, path to load)
UVICORN = ["-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--host", "127.0.0.1"]


def targets(workers: int, work: Path) -> list[tuple[str, str, list[str], str, dict[str, str]]]:
    """Return the stacks to compare: name, description, command (port as `{port}`), path, extra env."""
    uvicorn = [sys.executable, *UVICORN, "--workers", str(workers), "--port", "{port}"]
    return [
        ("floor", "plain Flask, gunicorn gthread (10 threads)",
         [sys.executable, "-m", "gunicorn", "--chdir", str(BENCH_DIR), "--workers", str(workers), "--worker-class",
          "gthread", "--threads", "10", "--bind", "127.0.0.1:{port}", "--keep-alive", "30", "--log-level", "warning",
          "floor_app:app"], "/v1/health", {}),
        ("service", "the service (`serve.py`: FlaskApp + injection + app.py's middleware)",
         [sys.executable, "serve.py"], "/v1/health",
         {"DATABASE_URL": f"sqlite:///{work / 'stacks.sqlite3'}", "APP_WORKERS": str(workers),
          "APP_ADDRESS": "127.0.0.1"}),
        ("connexion-flask", "Connexion 3 FlaskApp, nothing added, uvicorn", [*uvicorn, "bench.stack_apps:flask_app"],
         "/v1/health", {}),
        ("connexion-async-sync", "Connexion 3 AsyncApp, plain handler (thread pool), uvicorn",
         [*uvicorn, "bench.stack_apps:async_app"], "/v1/health", {}),
        ("connexion-async", "Connexion 3 AsyncApp, `async def` handler, uvicorn",
         [*uvicorn, "bench.stack_apps:async_app"], "/v1/health-async", {}),
    ]


def main(argv: list[str] | None = None) -> int:
    """Serve each stack, load them in turns with wrk, write the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per target")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "stacks.md")
    options = parser.parse_args(argv)
    ensure_tools(need_py_spy=False)
    facts = machine_facts()
    servers: list[tuple[Server, str, str]] = []
    with exit_on_signals(), tempfile.TemporaryDirectory(prefix="stacks-") as tmp:
        work = Path(tmp)
        env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1",
               # The floor builds its engine at import; nothing here reaches a database.
               "DATABASE_URL": "postgresql+psycopg2://bench@127.0.0.1:9/none"}
        try:
            for name, title, command, path, extra in targets(options.workers, work):
                port = free_port()
                server_env = env | extra | {"APP_PORT": str(port)}
                server = Server(name, [part.replace("{port}", str(port)) for part in command], server_env, port, work)
                servers.append((server, title, path))
                print(f"{name}: started in {server.start(path):.2f} s", flush=True)
            results: dict[str, list[dict]] = {server.name: [] for server, _, _ in servers}
            scenario_of = {server.name: Scenario("health", "health", "health.lua", lambda target, label, p=path: [p])
                           for server, _, path in servers}
            for warm in servers:
                run_wrk(warm[0].port, scenario_of[warm[0].name], warm[0].name, "warmup", options, 2)
            for round_number in range(options.rounds):
                order = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
                for server, _, _ in order:
                    pids = server.pids()
                    before = cpu_seconds(pids)
                    result = run_wrk(server.port, scenario_of[server.name], server.name, str(round_number),
                                     options, options.duration)
                    result["cpu_ms"] = 1000 * (cpu_seconds(pids) - before) / max(result["requests"], 1)
                    results[server.name].append(result)
                    print(f"  round {round_number + 1} {server.name:22} {result['rps']:7.0f} req/s "
                          f"p99 {result['p99_us'] / 1000:6.1f} ms  {result['cpu_ms']:.3f} CPU ms/req", flush=True)
        finally:
            for server, _, _ in servers:
                server.stop()
    floor = results["floor"]
    floor_rps = statistics.median(r["rps"] for r in floor)
    floor_p99 = statistics.median(r["p99_us"] for r in floor)
    floor_cpu = statistics.median(r["cpu_ms"] for r in floor)
    lines = [
        "# The serving stack alone: `GET /v1/health`",
        "",
        f"Written by `bench/stacks.py` on {facts['date']}, commit `{facts['commit'][:10]}`; {facts['cores']} cores, "
        f"Python {facts['python']}; `wrk -t{options.threads} -c{options.connections} -d{options.duration}s`, "
        f"{options.rounds} rounds taking turns, {options.workers} workers per target; medians. No database.",
        "",
        "| target | stack | req/s | vs floor | p50 / p99 ms | p99 vs floor | app CPU ms/req | extra CPU vs floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server, title, _ in servers:
        rounds = results[server.name]
        rps = statistics.median(r["rps"] for r in rounds)
        p50 = statistics.median(r["p50_us"] for r in rounds) / 1000
        p99 = statistics.median(r["p99_us"] for r in rounds)
        cpu = statistics.median(r["cpu_ms"] for r in rounds)
        lines.append(f"| {server.name} | {title} | {rps:,.0f} | {rps / floor_rps:.2f}× | {p50:.1f} / {p99 / 1000:.1f} "
                     f"| {p99 / floor_p99:.2f}× | {cpu:.3f} | {cpu - floor_cpu:+.3f} |")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
