"""``make bench-ab``: what one setting or one code change costs, A against B, in one run.

    .venv/bin/python -m bench.ab --label NAME --variant A:ENV=VALUE,... --variant B:...
        [--code B=/path/to/other/checkout/src] [--scenario point ...] [--backend sqlite]
        [--tree A=main] [--rounds N] [--seconds S] [--connections C] [--port P]

Each variant is the service (``bench.service:app``) with its own environment (and, with
``--code``, another checkout's ``src`` on PYTHONPATH), on a database of its own seeded with the
same 1,000 heroes. Both servers run at once, idle but for the variant under load: every round
runs every scenario on every variant, alternating which goes first, so drift on a shared machine
falls on both. Reports the median req/s and p50 per variant and each variant's ratio to the
first; writes ``bench/results/<time>-ab-<label>.{json,md}``.

``--tree NAME=REV`` serves variant NAME from a git revision instead: its ``src``, ``alembic`` and
``alembic.ini`` are unpacked (``git archive``) under ``bench/.work/``, and its database is built
by that revision's own migrations, so code from before a migration can be measured against code
after it (``--code`` serves another ``src`` on a database migrated by this checkout).

``{database_url}`` in a variant's setting is that variant's database URL:
``--variant replica:HEROES_READ_DATABASE_URL={database_url}`` routes reads through a read
database that is the primary itself (the cost of the routing, without replication).

``BENCH_AUTHORIZATION`` in a variant's environment is sent as the ``Authorization`` header of
every request (API keys, issue 11).
"""

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.databases import ALEMBIC, PostgresDatabase, SqliteDatabase
from bench.run import (
    PORT,
    RESULTS,
    SEED_ROWS,
    SERVICE,
    WORK,
    database_for,
    git_commit,
    measure,
    serve,
)
from bench.servers import ROOT, Server

SCENARIOS = ["point", "create", "create_keyed", "patch", "mixed"]


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return name, env


def unpack(revision: str) -> Path:
    """``revision``'s source tree (src, alembic, alembic.ini, logging.json) under
    bench/.work/tree-<commit>."""

    def git(*argv: str) -> bytes:
        return subprocess.run(["git", *argv], cwd=ROOT, check=True, capture_output=True).stdout

    commit = git("rev-parse", "--short", revision).decode().strip()
    tree = WORK / f"tree-{commit}"
    present = set(git("ls-tree", "--name-only", commit).decode().split())
    # logging.json: older revisions' Alembic env.py and `make run` read it, where there is one.
    wanted = [p for p in ("src", "alembic", "alembic.ini", "logging.json") if p in present]
    archive = git("archive", "--format=tar", commit, *wanted)
    tree.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def create_with(database: SqliteDatabase | PostgresDatabase, tree: Path) -> None:
    """``database.create()``, but migrated by ``tree``'s migrations and code."""
    if isinstance(database, SqliteDatabase):
        database.drop()
        database.path.parent.mkdir(parents=True, exist_ok=True)
    else:
        asyncio.run(database._admin(f'CREATE DATABASE "{database.database}"'))
    env = {**os.environ, "HEROES_DATABASE_URL": database.url, "PYTHONPATH": str(tree / "src")}
    command = [str(ALEMBIC), "-c", str(tree / "alembic.ini"), "upgrade", "head"]
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", required=True)
    parser.add_argument("--variant", action="append", required=True, type=parse_variant)
    parser.add_argument("--code", action="append", default=[], help="NAME=PATH to a src dir")
    parser.add_argument(
        "--tree", action="append", default=[], help="NAME=REV: a git revision's code and schema"
    )
    parser.add_argument("--scenario", action="append", choices=[*SCENARIOS, "page"])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--port", type=int, default=PORT, help="the first variant's; the others count up from it"
    )
    args = parser.parse_args()
    scenarios = args.scenario or SCENARIOS
    code = dict(item.split("=", 1) for item in args.code)
    trees = {name: unpack(rev) for name, rev in (item.split("=", 1) for item in args.tree)}
    code.update((name, str(tree / "src")) for name, tree in trees.items())
    WORK.mkdir(exist_ok=True)

    servers: dict[str, Server] = {}
    databases = []
    try:
        for number, (name, env) in enumerate(args.variant):
            database = database_for(args.backend, f"ab-{name}")
            if name in trees:
                create_with(database, trees[name])
            else:
                database.create()
            database.seed(SEED_ROWS)
            databases.append(database)
            # "{database_url}" in a variant's value: its own database's URL (a read database
            # that is the primary itself measures what routing reads costs).
            own = {k: v.replace("{database_url}", database.url) for k, v in env.items()}
            server_env = {"HEROES_DATABASE_URL": database.url, **own}
            if name in code:
                server_env["PYTHONPATH"] = code[name]
            servers[name] = serve(SERVICE, server_env, SEED_ROWS, args.port + number)
        runs = measure_rounds(args, scenarios, servers)
    finally:
        for server in servers.values():
            server.stop()
        for database in databases:
            database.drop()
    write_report(args, scenarios, runs)


def measure_rounds(
    args: argparse.Namespace, scenarios: list[str], servers: dict[str, Server]
) -> list[dict[str, Any]]:
    envs = dict(args.variant)
    runs = []
    for round_number in range(args.rounds):
        names = list(servers) if round_number % 2 == 0 else list(reversed(servers))
        for scenario in scenarios:
            for name in names:
                extra = {k: v for k, v in envs[name].items() if k.startswith("BENCH_")}
                run = measure(
                    servers[name],
                    scenario,
                    seconds=args.seconds,
                    connections=args.connections,
                    counters=True,
                    max_id=SEED_ROWS,
                    extra_env=extra,
                )
                runs.append({"variant": name, "round": round_number, **run})
                print(
                    f"round {round_number + 1}/{args.rounds} {scenario:7} {name:12} "
                    f"{run['rps']:8,.0f} req/s  p50 {run['p50_ms']:6.1f} ms  "
                    f"non-2xx {run['non2xx']}",
                    flush=True,
                )
    return runs


def write_report(
    args: argparse.Namespace, scenarios: list[str], runs: list[dict[str, Any]]
) -> None:
    names = [name for name, _ in args.variant]
    sources = ", ".join(f"`{source}`" for source in args.tree + args.code)
    stamp = datetime.now().strftime("%Y-%m-%dT%H%M")
    lines = [
        f"A/B run {stamp}, commit `{git_commit()}`, {args.backend}, {args.connections} "
        f"connections, {args.rounds} interleaved rounds of {args.seconds:g} s; medians.",
        "",
        "Variants: "
        + "; ".join(
            f"`{name}`: `{','.join(f'{k}={v}' for k, v in env.items()) or 'defaults'}`"
            for name, env in args.variant
        ),
        "",
        *([f"Code: {sources}; others: this checkout.", ""] if sources else []),
        "| scenario | variant | req/s | p50 ms | p99 ms | non-2xx | vs " + names[0] + " |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for scenario in scenarios:
        base = None
        for name in names:
            mine = [r for r in runs if r["variant"] == name and r["scenario"] == scenario]
            rps = statistics.median(r["rps"] for r in mine)
            base = base or rps
            lines.append(
                f"| {scenario} | {name} | {rps:,.0f} "
                f"| {statistics.median(r['p50_ms'] for r in mine):.1f} "
                f"| {statistics.median(r['p99_ms'] for r in mine):.1f} "
                f"| {sum(r['non2xx'] for r in mine)} | {rps / base:.1%} |"
            )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}-ab-{args.label}"
    Path(f"{path}.md").write_text(text)
    Path(f"{path}.json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    print(f"wrote {path}.md")


if __name__ == "__main__":
    main()
