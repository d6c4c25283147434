"""What observing the service costs: point reads at 64 connections, metrics on vs off, A/B.

    .venv/bin/python -m bench.metrics_ab [--rounds 5] [--seconds 8] [--port 8765]

Variants, each a fresh ``bench.service:app`` on the same seeded SQLite file (1,000 heroes),
served and pinned like ``make bench`` (uvicorn on core 0, wrk on core 1), interleaved, the order
reversed every other round:

- ``off``: ``HEROES_METRICS=false``, no access log (the request-id middleware still runs);
- ``metrics``: ``HEROES_METRICS=true`` (the default), no access log: the issue's A/B;
- ``metrics-multiproc``: metrics in prometheus-client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``), as ``make run`` serves them;
- ``metrics+log``: metrics and the access log (``logging.json``, text, to the server's log file),
  ``make run``'s defaults in one worker.

Prints each run, then the medians and each variant's ratio to ``off``.
"""

import argparse
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from bench.run import SERVICE, WORK, database_for
from bench.servers import Server, run_wrk, start_server

SEED_ROWS = 1000
MULTIPROC_DIR = WORK / "metrics-multiproc"
VARIANTS: dict[str, dict[str, str]] = {
    "off": {"HEROES_METRICS": "false", "HEROES_ACCESS_LOG": "false"},
    "metrics": {"HEROES_METRICS": "true", "HEROES_ACCESS_LOG": "false"},
    "metrics-multiproc": {
        "HEROES_METRICS": "true",
        "HEROES_ACCESS_LOG": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(MULTIPROC_DIR),
    },
    "metrics+log": {
        "HEROES_METRICS": "true",
        "HEROES_ACCESS_LOG": "true",
        "UVICORN_LOG_CONFIG": "logging.json",
    },
}


def start(env: dict[str, str], port: int, log: Path) -> Server:
    """The server, started again if it is not up in 30 s: on a shared 2-core machine another
    pinned benchmark can starve its start-up (seen once: an import that took over 30 s)."""
    for attempt in range(3):
        try:
            return start_server(SERVICE, port, env, log)
        except RuntimeError as exc:
            print(f"start attempt {attempt + 1} failed: {exc}", flush=True)
    raise RuntimeError(f"the server did not start in 3 attempts; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    database = database_for("sqlite", "metrics-ab")
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    database.create()
    try:
        for round_ in range(args.rounds):
            order = args.variants if round_ % 2 == 0 else args.variants[::-1]
            for name in order:
                env = {"HEROES_DATABASE_URL": database.url, **VARIANTS[name]}
                shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
                MULTIPROC_DIR.mkdir()
                database.seed(SEED_ROWS)
                server = start(env, args.port, WORK / f"metrics-ab-{name}.log")
                try:
                    run_wrk(server.url, "point", seconds=2, connections=64, max_id=SEED_ROWS)
                    server.settle()
                    raw = run_wrk(
                        server.url,
                        "point",
                        seconds=args.seconds,
                        connections=64,
                        max_id=SEED_ROWS,
                    )
                finally:
                    server.stop()
                run = {
                    "rps": raw["requests"] / raw["duration_us"] * 1e6,
                    "p50_ms": raw["p50_us"] / 1000,
                    "p99_ms": raw["p99_us"] / 1000,
                    "errors": raw["non2xx"] + raw["connect_errors"] + raw["read_errors"],
                }
                results[name].append(run)
                print(
                    f"round {round_ + 1} {name:18} {run['rps']:7,.0f} req/s  "
                    f"p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms",
                    flush=True,
                )
    finally:
        database.drop()
    base = statistics.median(r["rps"] for r in results["off"]) if "off" in results else None
    print(
        f"\npoint, 64 connections, SQLite, medians of {args.rounds} rounds of {args.seconds:g} s\n"
    )
    print("| variant | req/s (median) | vs off | p50 ms | p99 ms | errors | req/s per round |")
    print("|---|--:|--:|--:|--:|--:|---|")
    for name in args.variants:
        runs = results[name]
        median = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        ratio = f"{median['rps'] / base:.3f}" if base else "-"
        each = ", ".join(f"{r['rps']:,.0f}" for r in runs)
        print(
            f"| {name} | {median['rps']:,.0f} | {ratio} | {median['p50_ms']:.2f} "
            f"| {median['p99_ms']:.2f} | {sum(int(r['errors']) for r in runs)} | {each} |"
        )


if __name__ == "__main__":
    main()
