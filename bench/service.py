"""The service as the benchmark serves it: ``heroes_api.main:app`` plus one read-only route.

``GET /_bench/batches`` returns the batch counters since start (``{"reads": {"batches": ...,
"items": ..., "largest": ...}, "writes": {...}}``; ``{}`` with ``HEROES_BATCHING=false``), so
bench/run.py and bench/soak.py can report the mean batch size of each run from the difference
before and after it. The production app has no such route: only this module adds it, to the
very app object ``uvicorn heroes_api.main:app`` serves (built once, ``gc.freeze()`` included).
"""

from dataclasses import asdict

from heroes_api.main import app
from heroes_api.state import app_state


@app.get("/_bench/batches", include_in_schema=False)
async def batches() -> dict[str, dict[str, int]]:
    return {
        name: asdict(stats) for name, stats in app_state(app).hero_service.batch_stats().items()
    }
