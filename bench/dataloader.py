"""The natural batcher against aiodataloader, in the served app (``make bench-dataloader``).

    .venv/bin/python -m bench.dataloader [--rounds 3] [--seconds 8] [--backend postgresql]

``bench.dataloader:app`` is the service with its point-read batcher swapped for an
``aiodataloader.DataLoader`` (cache off: a cache would serve stale heroes across requests)
around the same batch function. Each round serves, on a freshly seeded SQLite database: the
service as it is, this variant, and the service with ``HEROES_BATCHING=false``; wrk drives
``point`` at 64 connections and at 1. Medians over rounds are printed.

DataLoader dispatches what was queued in one event-loop tick, in a task of its own, whether or
not a batch is still running; the natural batcher runs an idle caller inline and otherwise
gathers everything that arrives while the current batch runs.
"""

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiodataloader import DataLoader

from bench.run import SEED_ROWS, WORK, database_for
from bench.servers import run_wrk, start_server
from heroes_api.main import app
from heroes_api.state import app_state

_store = app_state(app).hero_service


class _DataLoaderReads:
    """Stands in for the store's point-read batcher: ``await reads(hero_id)``."""

    def __init__(self) -> None:
        self._loader: DataLoader[int, Any] | None = None

    async def __call__(self, hero_id: int) -> Any:
        if self._loader is None:  # made on first use, inside the server's event loop
            self._loader = DataLoader(self._load, cache=False, max_batch_size=256)
        return await self._loader.load(hero_id)

    async def _load(self, ids: Sequence[int]) -> list[Any]:
        found: list[Any] = await _store._read_batch(ids)
        return found


_store._reads = _DataLoaderReads()  # type: ignore[assignment]

VARIANTS = {
    "natural batcher": ("heroes_api.main:app", {}),
    "aiodataloader": ("bench.dataloader:app", {}),
    "batching off": ("heroes_api.main:app", {"HEROES_BATCHING": "false"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    database = database_for(args.backend, "dataloader")
    results: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    database.create()
    try:
        for round_ in range(args.rounds):
            order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
            for name in order:
                target, env = VARIANTS[name]
                database.seed(SEED_ROWS)
                server = start_server(
                    target,
                    args.port,
                    {"HEROES_DATABASE_URL": database.url, **env},
                    WORK / "dataloader.log",
                )
                try:
                    run_wrk(server.url, "point", seconds=2, connections=64, max_id=SEED_ROWS)
                    for connections in (64, 1):
                        raw = run_wrk(
                            server.url,
                            "point",
                            seconds=args.seconds,
                            connections=connections,
                            max_id=SEED_ROWS,
                        )
                        run = {
                            "rps": raw["requests"] / raw["duration_us"] * 1e6,
                            "p50_ms": raw["p50_us"] / 1000,
                            "p99_ms": raw["p99_us"] / 1000,
                            "errors": raw["non2xx"],
                        }
                        results[name, connections].append(run)
                        print(
                            f"round {round_ + 1} {name:16} c{connections:<3} {run['rps']:7,.0f} "
                            f"req/s  p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms",
                            flush=True,
                        )
                finally:
                    server.stop()
    finally:
        database.drop()
    print(f"\n{args.backend}, point, medians of {args.rounds} rounds of {args.seconds:g} s\n")
    print("| variant | connections | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|--:|--:|--:|--:|--:|")
    for (name, connections), runs in results.items():
        median = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        errors = sum(int(r["errors"]) for r in runs)
        print(
            f"| {name} | {connections} | {median['rps']:,.0f} | {median['p50_ms']:.2f} "
            f"| {median['p99_ms']:.2f} | {errors} |"
        )


if __name__ == "__main__":
    main()
