"""``make bench-patroni``: a Patroni + etcd failover drill under write load, with its numbers.

    .venv/bin/python -m bench.patroni_drill [--writers 16] [--before 4] [--after 3] [--ttl 10]

Installs Patroni and etcd from apt when they are missing, then, all on 127.0.0.1 in a temporary
folder (bench/patroni_cluster.py): one etcd, two Patroni nodes with synchronous replication, a
``heroes`` database migrated on the leader, and the service (uvicorn, ``make bench``'s flags) on
the multi-host URL docs/postgresql.md gives, both nodes listed with
``target_session_attrs=primary``. ``--writers`` clients create heroes, each write with an
Idempotency-Key and retried (same key) on 503, 409, 429, 502, 504 and transport errors, 50 ms
apart. After ``--before`` seconds the leader node dies: its Patroni, its postmaster and the
postmaster's children all get SIGKILL. Patroni's lock in etcd expires after at most ``--ttl``
seconds and the replica takes it and promotes itself. The load goes on for ``--after`` seconds
after the first write the new primary acknowledges; then every acknowledged hero must be on the
new primary exactly once. Prints the timeline and writes ``bench/results/<date>-patroni.json``.
Exits 1 if a write was lost or duplicated, a row was never acknowledged, a write was answered
with an unexpected status, or the service logged a traceback.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx

from bench.databases import migrate
from bench.patroni_cluster import (
    POLL_SECONDS,
    PatroniCluster,
    PatroniNode,
    Timing,
    free_port,
    install,
)
from bench.servers import start_server
from heroes_api.client.retries import RETRY_STATUSES, retryable

RESULTS = Path(__file__).with_name("results")
BACKOFF_SECONDS = 0.05  # a writer's pause before retrying (it does not wait out Retry-After: 1)
REQUEST_SECONDS = 10.0  # one attempt's timeout
FAILOVER_SECONDS = 60.0  # the kill to the first write on the new primary, at most
STOP_SECONDS = 30.0  # the writers finishing their last writes, at most


@dataclass
class Load:
    """What the writers saw. Times are ``time.monotonic()``."""

    acknowledged: dict[int, str] = field(default_factory=dict)  # id -> name
    acknowledged_at: list[float] = field(default_factory=list)  # answer received
    unavailable_at: list[float] = field(default_factory=list)  # 503s
    transport_errors_at: list[float] = field(default_factory=list)
    other_retries_at: list[float] = field(default_factory=list)  # 409, 429, 502, 504
    unexpected: list[str] = field(default_factory=list)
    replayed: int = 0  # answered from the key's stored answer: done before, answer lost
    longest_write: float = 0.0  # first attempt to answer, one write
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def first_after(self, moment: float) -> float | None:
        return next((at for at in self.acknowledged_at if at > moment), None)


async def writer(client: httpx.AsyncClient, number: int, load: Load, deadline: float) -> None:
    """Create heroes one after the other until ``load.stop``; retry each until it is answered."""
    sequence = 0
    while not load.stop.is_set():
        name = f"drill-{number}-{sequence}"
        headers = {"Idempotency-Key": f'"{uuid.uuid4().hex}"'}  # one key for every attempt
        started = time.monotonic()
        while time.monotonic() < deadline:
            try:
                response = await client.post(
                    "/heroes/", json={"name": name, "secret_name": "s"}, headers=headers
                )
            except httpx.TransportError as error:
                if not retryable(error):
                    raise
                load.transport_errors_at.append(time.monotonic())
            else:
                if response.is_success:
                    load.acknowledged[response.json()["id"]] = name
                    load.acknowledged_at.append(answered := time.monotonic())
                    load.longest_write = max(load.longest_write, answered - started)
                    load.replayed += response.headers.get("Idempotent-Replayed") == "true"
                    break
                if response.status_code not in RETRY_STATUSES:
                    load.unexpected.append(f"{name}: {response.status_code} {response.text}")
                    break
                retries = (
                    load.unavailable_at if response.status_code == 503 else load.other_retries_at
                )
                retries.append(time.monotonic())
            await asyncio.sleep(BACKOFF_SECONDS)
        else:
            raise TimeoutError(f"{name} not written before the deadline")
        sequence += 1


@dataclass
class Failover:
    """Seconds from the kill to each step."""

    lock_expired: float  # the dead leader's key gone from etcd (its lease ran out)
    lock_taken: float  # the survivor holds the leader key
    rest_primary: float  # the survivor's GET /primary answers 200
    promoted: float  # the survivor's pg_is_in_recovery() is false
    first_write: float | None = None  # the first write acknowledged after lock_taken


async def watch(cluster: PatroniCluster, dead: PatroniNode, killed_at: float) -> Failover:
    """Poll etcd, the survivor's REST API and its PostgreSQL, each every 20 ms on its own,
    until each shows its step of the failover."""
    survivor = cluster.other(dead)
    deadline = killed_at + FAILOVER_SECONDS

    async def seconds_until(probe: Callable[[], Awaitable[bool]], what: str) -> float:
        while True:
            with suppress(httpx.TransportError):
                if await probe():
                    return time.monotonic() - killed_at
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {FAILOVER_SECONDS:g} s")
            await asyncio.sleep(POLL_SECONDS)

    standby = await asyncpg.connect(survivor.dsn(), timeout=5)
    try:
        async with httpx.AsyncClient(timeout=1) as http:

            async def holder() -> str | None:
                return await cluster.etcd.leader(http)

            async def expired() -> bool:
                return await holder() != dead.name

            async def taken() -> bool:
                return await holder() == survivor.name

            async def primary() -> bool:
                return (await http.get(f"{survivor.rest_url}/primary")).status_code == 200

            async def promoted() -> bool:
                return not await standby.fetchval("SELECT pg_is_in_recovery()")

            steps = await asyncio.gather(
                seconds_until(expired, "the leader key expired"),
                seconds_until(taken, "the survivor holding the leader key"),
                seconds_until(primary, "the survivor's GET /primary 200"),
                seconds_until(promoted, "the survivor out of recovery"),
            )
    finally:
        await standby.close()
    return Failover(*steps)


async def wait_for(condition: Callable[[], bool], what: str, deadline: float) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


async def drill(
    cluster: PatroniCluster, leader: PatroniNode, base_url: str, args: argparse.Namespace
) -> tuple[Load, Failover, float]:
    """The load, the leader's death, the failover; returns what was seen and the kill's time."""
    load = Load()
    limits = httpx.Limits(max_connections=args.writers, max_keepalive_connections=args.writers)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_SECONDS, limits=limits
    ) as client:
        deadline = time.monotonic() + args.before + FAILOVER_SECONDS + args.after + STOP_SECONDS
        writers = [
            asyncio.create_task(writer(client, n, load, deadline)) for n in range(args.writers)
        ]
        try:
            await asyncio.sleep(args.before)  # the load before the kill (not a wait for state)
            if not load.acknowledged:
                raise RuntimeError(f"no write acknowledged in {args.before:g} s")
            print(f"killing {leader.name} (Patroni, postmaster, children) under load", flush=True)
            killed_at = await asyncio.to_thread(leader.kill)
            failover = await watch(cluster, leader, killed_at)
            lock_taken_at = killed_at + failover.lock_taken
            await wait_for(
                lambda: load.first_after(lock_taken_at) is not None,
                "a write on the new primary",
                killed_at + FAILOVER_SECONDS,
            )
            first = load.first_after(lock_taken_at)
            assert first is not None
            failover.first_write = first - killed_at
            await asyncio.sleep(args.after)  # the load after the failover
        finally:
            load.stop.set()
            done, pending = await asyncio.wait(writers, timeout=STOP_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            errors = [task.exception() for task in done if not task.cancelled()]
    if pending:
        raise TimeoutError(f"{len(pending)} writers still writing after {STOP_SECONDS:g} s")
    for error in errors:
        if error is not None:
            raise error
    return load, failover, killed_at


def verify(load: Load, stored: list[tuple[int, str]]) -> dict[str, int]:
    """Every acknowledged hero on the new primary exactly once, under its id; nothing else."""
    by_id = dict(stored)
    copies = Counter(name for _, name in stored)
    acknowledged = set(load.acknowledged.values())
    return {
        "acknowledged": len(load.acknowledged),
        "found_once": sum(
            by_id.get(id_) == name and copies[name] == 1 for id_, name in load.acknowledged.items()
        ),
        "missing": sum(by_id.get(id_) != name for id_, name in load.acknowledged.items()),
        "duplicated": sum(count - 1 for count in copies.values()),
        "never_acknowledged": sum(name not in acknowledged for name in copies),
    }


def report(result: dict[str, Any]) -> str:
    failover, load, checks = result["failover"], result["load"], result["verified"]

    def seconds(step: str) -> str:
        return f"{failover[step]:6.2f} s"

    timing = result["timing"]
    return "\n".join(
        [
            f"Patroni {result['versions']['patroni']}, etcd {result['versions']['etcd']}, "
            f"PostgreSQL {result['versions']['postgresql']}; ttl {timing['ttl']} s, "
            f"loop_wait {timing['loop_wait']} s, retry_timeout {timing['retry_timeout']} s; "
            f"{result['writers']} writers",
            f"kill -> leader key expired in etcd      {seconds('lock_expired')}",
            f"kill -> survivor holds the leader key   {seconds('lock_taken')}",
            f"kill -> survivor's GET /primary is 200  {seconds('rest_primary')}",
            f"kill -> survivor out of recovery        {seconds('promoted')}",
            f"kill -> first write on the new primary  {seconds('first_write')}",
            f"in the gap: {load['unavailable_in_gap']} 503s, "
            f"{load['transport_errors_in_gap']} transport errors, "
            f"{load['other_retries_in_gap']} other retried answers; "
            f"longest write {load['longest_write']:.2f} s; {load['replayed']} writes answered "
            "by replaying their Idempotency-Key",
            f"acknowledged writes: {load['acknowledged']} "
            f"({load['acknowledged_before_kill']} before the kill, "
            f"{load['acknowledged_in_gap']} between the kill and the new leader)",
            f"on the new primary: {checks['found_once']} of {checks['acknowledged']} acknowledged "
            f"heroes exactly once; missing {checks['missing']}, duplicated "
            f"{checks['duplicated']}, never acknowledged {checks['never_acknowledged']}; "
            f"unexpected answers {len(result['unexpected'])}; "
            f"tracebacks in the service's log {result['service_tracebacks']}",
        ]
    )


def summarize(
    load: Load, failover: Failover, killed_at: float, verified: dict[str, int]
) -> dict[str, Any]:
    gap_end = killed_at + (failover.first_write or 0.0)
    lock_taken_at = killed_at + failover.lock_taken

    def in_gap(times: list[float]) -> int:
        return sum(killed_at <= at <= gap_end for at in times)

    return {
        "failover": asdict(failover),
        "load": {
            "acknowledged": len(load.acknowledged),
            "acknowledged_before_kill": sum(at < killed_at for at in load.acknowledged_at),
            "acknowledged_in_gap": sum(
                killed_at <= at <= lock_taken_at for at in load.acknowledged_at
            ),
            "unavailable": len(load.unavailable_at),
            "unavailable_in_gap": in_gap(load.unavailable_at),
            "transport_errors": len(load.transport_errors_at),
            "transport_errors_in_gap": in_gap(load.transport_errors_at),
            "other_retries_in_gap": in_gap(load.other_retries_at),
            "replayed": load.replayed,
            "longest_write": load.longest_write,
        },
        "verified": verified,
        "unexpected": load.unexpected,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the cluster, serve, drill, verify; everything is gone when this returns."""
    timing = Timing(args.ttl, args.loop_wait, args.retry_timeout)
    with ExitStack() as stack:
        cluster = stack.enter_context(PatroniCluster(timing))
        stack.push(_logs_on_failure(cluster))
        leader = cluster.leader()
        print(f"cluster up in {cluster.root}: {leader.name} leads", flush=True)
        found = cluster.versions()
        asyncio.run(leader.fetch("CREATE DATABASE heroes"))
        migrate(f"postgresql+asyncpg://postgres@127.0.0.1:{leader.port}/heroes")
        hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in cluster.nodes)
        url = f"postgresql+asyncpg://postgres@/heroes?{hosts}&target_session_attrs=primary"
        env = {"HEROES_DATABASE_URL": url, "HEROES_ENV_FILE": ""}
        server = start_server("heroes_api.main:app", free_port(), env, cluster.root / "uvicorn.log")
        stack.callback(server.stop)
        load, failover, killed_at = asyncio.run(drill(cluster, leader, server.url, args))
        if server.process.poll() is not None:
            raise RuntimeError("the service exited during the drill")
        tracebacks = (cluster.root / "uvicorn.log").read_text(errors="replace").count("Traceback")
        stored = asyncio.run(cluster.other(leader).fetch("SELECT id, name FROM hero", "heroes"))
        verified = verify(load, [(row["id"], row["name"]) for row in stored])
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "versions": found,
        "timing": asdict(timing),
        "writers": args.writers,
        "url": url,
        **summarize(load, failover, killed_at, verified),
        "service_tracebacks": tracebacks,
    }


def _logs_on_failure(cluster: PatroniCluster) -> Callable[..., None]:
    """An exit callback (``ExitStack.push``) that prints the end of every log when the drill
    failed (not when it was interrupted), before the folder is removed."""

    def show(failed: type[BaseException] | None, *_: object) -> None:
        if failed is None or issubclass(failed, KeyboardInterrupt):
            return
        for log in sorted(cluster.root.glob("**/*.log")):
            lines = log.read_text(errors="replace").splitlines()[-20:]
            print(f"--- {log.relative_to(cluster.root)}", *lines, sep="\n", file=sys.stderr)

    return show


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument("--before", type=float, default=4, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=3, help="seconds of load after failover")
    parser.add_argument("--ttl", type=int, default=Timing.ttl, help="Patroni's ttl (s)")
    parser.add_argument("--loop-wait", type=int, default=Timing.loop_wait)
    parser.add_argument("--retry-timeout", type=int, default=Timing.retry_timeout)
    return parser.parse_args()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    install()
    started = time.monotonic()
    result = run(args)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(report(result))
    print(f"took {result['seconds']} s, cleaned up")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now():%Y-%m-%dT%H%M%S}-patroni.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    checks, tracebacks = result["verified"], result["service_tracebacks"]
    failures = (checks["missing"], checks["duplicated"], checks["never_acknowledged"])
    if any(failures) or result["unexpected"] or tracebacks:
        sys.exit(1)


if __name__ == "__main__":
    main()
