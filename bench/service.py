"""The service as the benchmark serves it: ``heroes_api.main:app`` plus one read-only route.

``GET /_bench/batches`` returns the batch counters since start (``{"reads": {"batches": ...,
"items": ..., "largest": ...}, "writes": {...}}``; ``{}`` with ``HEROES_BATCHING=false``), so
bench/run.py and bench/soak.py can report the mean batch size of each run from the difference
before and after it. The production app has no such route: only this module adds it, to the
very app object ``uvicorn heroes_api.main:app`` serves (built once, ``gc.freeze()`` included).
"""

from dataclasses import asdict
from typing import Any

from heroes_api.main import app


def _service() -> Any:
    """The hero service: on the typed app state, or (a release before it, served by
    ``make bench-ab --tree``) as ``app.state.heroes``."""
    shared = getattr(app.state, "shared", None)
    return app.state.heroes if shared is None else shared.hero_service


@app.get("/_bench/batches", include_in_schema=False)
async def batches() -> dict[str, dict[str, int]]:
    return {name: asdict(stats) for name, stats in _service().batch_stats().items()}
