"""``make soak``: the mixed scenario at 64 connections for 10 minutes, one number per minute.

    .venv/bin/python -m bench.soak [--minutes 10] [--backend sqlite|postgresql] [--port 8765]

Seeds 1,000 heroes, serves the service (bench.service:app, batching on) with ``make bench``'s
flags and pinning, warms up for 2 s, then runs wrk ``mixed`` at 64 connections in back-to-back
runs of 60 s, one per minute. Before the first minute and after every minute it reads the
server's resident set size (VmRSS) and batch counters. Prints a table per minute, writes
``bench/results/<date>-soak.{json,md}`` and checks that memory and throughput hold steady:
RSS grows less than 10% from the start of minute 1 to the end of the last minute, and the
median req/s of the last 3 minutes is at least 90% of the first 3 minutes' median.
"""

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime
from typing import Any

from bench.report import checks_table, format_batch
from bench.run import PORT, RESULTS, SEED_ROWS, SERVICE, WORK, database_for, git_commit, measure
from bench.servers import raise_open_file_limit, run_wrk, start_server

MAX_RSS_GROWTH = 0.10
MIN_LATE_THROUGHPUT = 0.90  # last minutes' median req/s over the first minutes'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--port", type=int, default=PORT, help="the server's port")
    parser.add_argument(
        "--minute-seconds",
        type=float,
        default=60,
        help="length of each wrk run (60: one per minute; shorter only to try the script)",
    )
    args = parser.parse_args()
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")
    return args


def checks(minutes: list[dict[str, Any]], rss_start: float) -> list[tuple[str, str, bool]]:
    """(target, measured, holds): RSS growth, throughput drift, errors."""
    rss_end = minutes[-1]["rss_mb"]
    growth = rss_end / rss_start - 1
    results = [
        (
            f"RSS growth, start of minute 1 to end of minute {len(minutes)} < 10%",
            f"{rss_start:.0f} -> {rss_end:.0f} MB ({growth:+.1%})",
            growth < MAX_RSS_GROWTH,
        )
    ]
    window = min(3, len(minutes) // 2)
    if window:
        first = statistics.median(m["rps"] for m in minutes[:window])
        last = statistics.median(m["rps"] for m in minutes[-window:])
        results.append(
            (
                f"median req/s of the last {window} minutes >= 90% of the first {window}",
                f"{last:,.0f} / {first:,.0f} = {last / first:.1%}",
                last / first >= MIN_LATE_THROUGHPUT,
            )
        )
    errors = sum(m["non2xx"] + m["socket_errors"] for m in minutes)
    results.append(("zero non-2xx and socket errors", f"{errors}", errors == 0))
    return results


def markdown(meta: dict[str, Any], minutes: list[dict[str, Any]], rss_start: float) -> str:
    lines = [
        f"Soak {meta['date']} on {meta['machine']}, commit `{meta['commit']}`: {meta['backend']}, "
        f"batching on, {SEED_ROWS:,} heroes seeded, wrk `mixed` at {meta['connections']} "
        f"connections, {len(minutes)} back-to-back runs of {meta['minute_seconds']:g} s. "
        f"Server RSS (VmRSS) after the 2 s warm-up: {rss_start:.0f} MB. "
        f"Load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after.",
        "",
        "| minute | req/s | p50 ms | p99 ms | non-2xx | socket errors | RSS MB at end "
        "| mean batch |",
        "|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for m in minutes:
        lines.append(
            f"| {m['minute']} | {m['rps']:,.0f} | {m['p50_ms']:,.1f} | {m['p99_ms']:,.1f} "
            f"| {m['non2xx']} | {m['socket_errors']} | {m['rss_mb']:.1f} "
            f"| {format_batch(m['mean_batch'])} |"
        )
    lines += ["", *checks_table("target", checks(minutes, rss_start))]
    return "\n".join([*lines, ""])


def main() -> None:
    args = parse_args()
    raise_open_file_limit(args.connections + 256)
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now()
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "backend": args.backend,
        "connections": args.connections,
        "minute_seconds": args.minute_seconds,
        "load_before": os.getloadavg(),
    }
    database = database_for(args.backend, "soak")
    minutes: list[dict[str, Any]] = []
    database.create()
    try:
        database.seed(SEED_ROWS)
        env = {"HEROES_DATABASE_URL": database.url, "HEROES_BATCHING": "true"}
        server = start_server(SERVICE, args.port, env, WORK / "soak-server.log")
        try:
            run_wrk(server.url, "point", seconds=2, connections=64, max_id=SEED_ROWS)  # warm up
            server.settle()
            rss_start = server.rss_mb()
            print(f"server RSS at the start of minute 1: {rss_start:.1f} MB", flush=True)
            for minute in range(1, args.minutes + 1):
                started = time.monotonic()
                run = measure(
                    server,
                    "mixed",
                    seconds=args.minute_seconds,
                    connections=args.connections,
                    counters=True,
                    max_id=SEED_ROWS,
                )
                minutes.append(
                    {
                        "minute": minute,
                        **run,
                        "rss_mb": server.rss_mb(),
                        "wall_s": time.monotonic() - started,
                    }
                )
                m = minutes[-1]
                print(
                    f"minute {minute:2}/{args.minutes} {m['rps']:8,.0f} req/s  "
                    f"p50 {m['p50_ms']:6.1f} ms  p99 {m['p99_ms']:7.1f} ms  "
                    f"errors {m['non2xx']}/{m['socket_errors']}  rss {m['rss_mb']:.1f} MB  "
                    f"batch {format_batch(m['mean_batch'])}",
                    flush=True,
                )
        finally:
            server.stop()
    finally:
        database.drop()
    meta["load_after"] = os.getloadavg()
    section = markdown(meta, minutes, rss_start)
    stem = now.strftime("%Y-%m-%dT%H%M") + "-soak"
    stem += "" if args.backend == "sqlite" else f"-{args.backend}"
    if (args.minutes, args.minute_seconds) != (10, 60):
        stem += f"-{args.minutes}x{args.minute_seconds:g}s"
    result = {
        "meta": meta,
        "rss_start_mb": rss_start,
        "checks": [
            {"target": name, "measured": value, "holds": ok}
            for name, value, ok in checks(minutes, rss_start)
        ],
        "minutes": minutes,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(section)
    print(f"\n{section}\nWrote bench/results/{stem}.{{json,md}}.")


if __name__ == "__main__":
    main()
