"""Refuse to serve a database that cannot work, with one short message.

The served app (``heroes_api.main``) and ``make run``'s launcher call ``database_or_exit`` after
the settings (``heroes_api.preflight``), before anything else: a database that cannot be used
ends the process with a line that says what to fix (``SystemExit``: no traceback), not with
whatever failed first further down.
"""

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from heroes_api.config import Settings
from heroes_api.db import make_engine, schema_problem
from heroes_api.errors import DatabaseError
from heroes_api.preflight import PREFIX, file_problem

T = TypeVar("T")


def database_or_exit(settings: Settings) -> None:
    """Exit unless the database can be served: the file checks, then the schema check (run on a
    thread of its own: the caller may be inside a running event loop, as uvicorn's import is)."""
    problem = file_problem(settings, must_exist=True)
    if problem is None:
        problem = _in_thread(_schema_problem(settings))
    if problem is not None:
        raise SystemExit(PREFIX + problem)


async def _schema_problem(settings: Settings) -> str | None:
    engine = make_engine(settings)
    try:
        return await schema_problem(engine)
    except DatabaseError as error:
        cause = error.__cause__
        return f"the database cannot be reached: {type(cause).__name__}: {cause}"
    finally:
        await engine.dispose()


def _in_thread(check: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, check).result()
