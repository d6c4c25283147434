"""``make bench``: the service vs an in-memory ceiling, batching on and off, then at scale.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--seconds S] [--low-seconds S]
        [--scale-rows N] [--scale-rounds N] [--no-postgres] [--no-scale | --scale-only]
        [--port P] [--label NAME]

Each round starts every target afresh (ceiling; SQLite with batching on, then off; PostgreSQL
with batching on, then off; the order flips every round), seeds 1,000 heroes, warms up, and runs
every scenario with wrk at 64 connections, then every scenario at 1 connection (the cost at low
load), then point and mixed at 1,024 connections. The service's batch counters are read before
and after each run, for the mean batch size. Medians over rounds are reported. The scale run
loads 1,000,000 heroes and compares point and page reads with the 1,000-hero database, again
interleaved, and measures at scale deep offsets, keyset pages, a lookup by name, an age filter
and point reads with batching off (issue 9's yardsticks). ``--scale-only`` runs just that.
"""

import argparse
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.databases import AGE_MODULUS, PostgresDatabase, SqliteDatabase, postgres_server
from bench.servers import Server, raise_open_file_limit, run_wrk, start_server

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
SEED_ROWS = 1000
PORT = 8765
SERVICE = "bench.service:app"  # heroes_api.main:app plus GET /_bench/batches
CEILING = "bench.ceiling:app"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
HIGH_SCENARIOS = ["point", "mixed"]  # the ones run at --high-connections
Database = SqliteDatabase | PostgresDatabase


def postgres_url() -> str:
    return os.environ.get("HEROES_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)


def database_for(backend: str, name: str) -> Database:
    """A throwaway database for a one-backend tool: ``bench/.work/<name>.db`` on SQLite, else a
    fresh database on the benchmark's PostgreSQL server."""
    return (
        SqliteDatabase(WORK / f"{name}.db")
        if backend == "sqlite"
        else PostgresDatabase(postgres_url())
    )


@dataclass(frozen=True)
class Target:
    """One server configuration of the main phase: the ceiling, or the service on a database."""

    database: Database | None  # None: the ceiling
    batching: bool = True

    @property
    def name(self) -> str:
        if self.database is None:
            return "ceiling"
        return self.database.name + ("" if self.batching else "-unbatched")


def batch_deltas(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], scenario: str
) -> dict[str, dict[str, int]]:
    """Batches and items each of the scenario's batchers ran between two counter readings."""
    return {
        name: {key: after[name][key] - before[name][key] for key in ("batches", "items")}
        for name in report.BATCHERS.get(scenario, ())
        if name in after and name in before
    }


def measure(
    server: Server,
    scenario: str,
    *,
    seconds: float,
    connections: int,
    counters: bool,
    **wrk: Any,
) -> dict[str, Any]:
    """One wrk run; ``counters``: the server is bench.service's, read its batch counters too."""
    server.reset_peak_rss()
    before = server.get_json("/_bench/batches") if counters else {}
    raw = run_wrk(server.url, scenario, seconds=seconds, connections=connections, **wrk)
    settle_s = server.settle()  # the requests still queued when wrk stopped belong to this run
    batches = batch_deltas(before, server.get_json("/_bench/batches"), scenario) if counters else {}
    elapsed = raw["duration_us"] / 1e6
    return {
        "scenario": scenario,
        "connections": connections,
        "requests": raw["requests"],
        "rps": raw["requests"] / elapsed,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non2xx": raw["non2xx"],
        "wrong_bodies": raw["wrong"],  # 2xx answers without what a filtered scenario asked for
        "socket_errors": sum(
            raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        "peak_rss_mb": server.peak_rss_mb(),
        "settle_s": settle_s,
        "batches": batches,
        "mean_batch": report.mean_batch(batches),
    }


def serve(app: str, env: dict[str, str], max_id: int, port: int) -> Server:
    server = start_server(app, port, env, WORK / "server.log")
    run_wrk(server.url, "point", seconds=2, connections=64, max_id=max_id)  # warm up
    server.settle()
    return server


def serve_target(target: Target, port: int) -> Server:
    if target.database is None:
        return serve(CEILING, {"BENCH_SEED_ROWS": str(SEED_ROWS)}, SEED_ROWS, port)
    target.database.seed(SEED_ROWS)
    env = {
        "HEROES_DATABASE_URL": target.database.url,
        "HEROES_BATCHING": "true" if target.batching else "false",
    }
    return serve(SERVICE, env, SEED_ROWS, port)


def describe(run: dict[str, Any], width: int = 7) -> str:
    """One log line; ``width``: of the scenario's name."""
    return (
        f"{run['scenario']:{width}} c{run['connections']:<4} {run['rps']:8,.0f} req/s  "
        f"p50 {run['p50_ms']:7.1f} ms  p99 {run['p99_ms']:7.1f} ms  "
        f"errors {run['non2xx']}/{run['socket_errors']}  rss {run['peak_rss_mb']:.0f} MB"
        + (f"  batch {report.format_batch(run['mean_batch'])}" if run["mean_batch"] else "")
        + (f"  settled in {run['settle_s']:.1f} s" if run["settle_s"] >= 0.5 else "")
        + (f"  WRONG BODIES {run['wrong_bodies']}" if run["wrong_bodies"] else "")
    )


def main_phase(args: argparse.Namespace, databases: list[Database]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    targets = [Target(None)]
    for database in databases:
        targets += [Target(database, batching=True), Target(database, batching=False)]
    plan = [(s, args.connections, args.seconds) for s in report.SCENARIOS]
    plan += [(s, args.low_connections, args.low_seconds) for s in report.SCENARIOS]
    plan += [(s, args.high_connections, args.seconds) for s in HIGH_SCENARIOS]
    for round_ in range(args.rounds):
        for target in targets if round_ % 2 == 0 else targets[::-1]:
            server = serve_target(target, args.port)
            try:
                for scenario, connections, seconds in plan:
                    run = measure(
                        server,
                        scenario,
                        seconds=seconds,
                        connections=connections,
                        counters=target.database is not None,
                        max_id=SEED_ROWS,
                    )
                    runs.append(
                        {
                            "phase": "main",
                            "target": target.name,
                            "rows": SEED_ROWS,
                            "round": round_,
                            **run,
                        }
                    )
                    print(
                        f"round {round_ + 1}/{args.rounds} {target.name:20} {describe(run)}",
                        flush=True,
                    )
            finally:
                server.stop()
    return runs


@dataclass(frozen=True)
class ScaleRun:
    """One wrk run of the scale phase: ``label`` names it in the results."""

    label: str
    scenario: str  # scenario.lua's
    offsets: tuple[int, int] = (0, 900)


def scale_plan(rows: int, batching: bool) -> list[ScaleRun]:
    """What one server start of the scale phase measures: point and shallow pages everywhere;
    at scale, deep offsets, keyset pages at random depths and the filters; with batching off,
    only point reads (what issue 9 compares a lookup by name with)."""
    if not batching:
        return [ScaleRun("point_unbatched", "point")]
    plan = [ScaleRun("point", "point"), ScaleRun("page", "page")]
    if rows > SEED_ROWS:
        plan += [
            ScaleRun("page_deep", "page", (0, rows - 100)),
            ScaleRun("page_keyset", "page_keyset"),
            ScaleRun("by_name", "by_name"),
            ScaleRun("age_range", "age_range"),
        ]
    return plan


def scale_phase(
    args: argparse.Namespace, small: Database, big: Database, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    big.create()
    started = time.perf_counter()
    big.seed(args.scale_rows)
    meta["seed_rows_per_s"][small.name] = args.scale_rows / (time.perf_counter() - started)
    small.seed(SEED_ROWS)
    # Server starts, interleaved: the small and the big database with batching on, and the big
    # one with batching off (point reads only).
    starts = [(small, SEED_ROWS, True), (big, args.scale_rows, True), (big, args.scale_rows, False)]
    for round_ in range(args.scale_rounds):
        for database, rows, batching in starts if round_ % 2 == 0 else starts[::-1]:
            env = {
                "HEROES_DATABASE_URL": database.url,
                "HEROES_BATCHING": "true" if batching else "false",
            }
            server = serve(SERVICE, env, rows, args.port)
            try:
                for step in scale_plan(rows, batching):
                    run = measure(
                        server,
                        step.scenario,
                        seconds=args.seconds,
                        connections=args.connections,
                        counters=True,
                        max_id=rows,
                        offsets=step.offsets,
                        age_modulus=AGE_MODULUS,
                    )
                    record = {
                        "phase": "scale",
                        "target": database.name,
                        "rows": rows,
                        "round": round_,
                        **run,
                        "scenario": step.label,
                    }
                    runs.append(record)
                    print(
                        f"scale {round_ + 1}/{args.scale_rounds} {database.name:10} {rows:>9,} "
                        f"{describe(record, 15)}",
                        flush=True,
                    )
            finally:
                server.stop()
            meta["database_mb"][f"{database.name}:{rows}"] = database.size_bytes() / 2**20
    big.drop()
    return runs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round of 4 s, 1 scale round of 200k rows; README left unchanged",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8, help="per wrk run")
    parser.add_argument(
        "--low-seconds", type=float, help="per 1-connection run (default: --seconds)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--low-connections", type=int, default=1)
    parser.add_argument("--high-connections", type=int, default=1024)
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument("--scale-rounds", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    phases = parser.add_mutually_exclusive_group()
    phases.add_argument("--no-scale", action="store_true", help="skip the scale run")
    phases.add_argument(
        "--scale-only",
        action="store_true",
        help="skip the main phase: only the scale run; README left unchanged",
    )
    parser.add_argument("--port", type=int, default=PORT, help="the servers' port")
    parser.add_argument(
        "--label", default="", help="suffix for the result files; leaves the README unchanged"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.scale_rows, args.scale_rounds = 1, 4, 200_000, 1
    if args.low_seconds is None:
        args.low_seconds = args.seconds
    return args


def git_commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=BENCH, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src").strip() else "")


def main() -> None:
    args = parse_args()
    raise_open_file_limit(args.high_connections + 256)
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    now = datetime.now()
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "quick": args.quick,
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "rounds": 0 if args.scale_only else args.rounds,
        "seconds": args.seconds,
        "low_seconds": args.low_seconds,
        "connections": args.connections,
        "low_connections": args.low_connections,
        "high_connections": args.high_connections,
        "scale_rounds": 0 if args.no_scale else args.scale_rounds,
        "scale_rows": args.scale_rows,
        "age_modulus": AGE_MODULUS,
        "load_before": os.getloadavg(),
        "seed_rows_per_s": {},
        "database_mb": {},
    }
    databases: list[Database] = [SqliteDatabase(WORK / "heroes-1k.db")]
    postgres_dsn = postgres_url()
    if not args.no_postgres:
        if (problem := postgres_server(postgres_dsn)) is None:
            databases.append(PostgresDatabase(postgres_dsn))
        else:
            print(
                f"PostgreSQL pass skipped: no server at {postgres_dsn} ({problem}); "
                "set HEROES_BENCH_POSTGRES_URL or pass --no-postgres",
                flush=True,
            )
            meta["postgres_skipped"] = problem
    runs: list[dict[str, Any]] = []
    created: list[Database] = []
    try:
        for database in databases:
            database.create()
            created.append(database)
        if not args.scale_only:
            runs += main_phase(args, databases)
        if not args.no_scale:
            for database in databases:
                big: Database = (
                    SqliteDatabase(WORK / "heroes-big.db")
                    if isinstance(database, SqliteDatabase)
                    else PostgresDatabase(postgres_dsn)
                )
                created.append(big)
                runs += scale_phase(args, database, big, meta)
    finally:
        for database in created:
            database.drop()
    meta["load_after"] = os.getloadavg()
    meta["minutes"] = round((time.perf_counter() - started) / 60, 1)

    stem = now.strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "")
    stem += "-scale" if args.scale_only else ""
    stem += f"-{args.label}" if args.label else ""
    rows = report.summarize(runs)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "summary": rows, "runs": runs}, indent=1) + "\n"
    )
    written = ["json", "md"]
    chart = None
    if not args.scale_only:  # the chart shows the main phase
        report.chart(rows, RESULTS / f"{stem}.png", meta)
        chart = f"results/{stem}.png"
        written.append("png")
    section = report.markdown(meta, rows, chart)
    (RESULTS / f"{stem}.md").write_text(section + "\n")
    if not (args.quick or args.label or args.scale_only):
        report.update_readme(BENCH / "README.md", section)
    print(
        f"\n{section}\nWrote bench/results/{stem}.{{{','.join(written)}}} in {meta['minutes']} min."
    )


if __name__ == "__main__":
    main()
