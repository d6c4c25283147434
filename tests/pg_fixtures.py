"""Fixtures for throwaway PostgreSQL clusters (tests/pg_cluster.py); conftest.py loads this.

Each fixture builds its servers for one test and removes them after it, passed or failed. Where
the binaries are missing the test is skipped with the reason, printed at the end of the run
(``HEROES_TEST_REQUIRE_ALL``, set in CI, turns that skip into a failure).
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.pg_cluster import PgCluster, missing_binaries

_skip_reasons: list[str] = []
LOG_LINES = 30


def _skip_if_missing(*, pgbouncer: bool = False) -> None:
    if reason := missing_binaries(pgbouncer=pgbouncer):
        _skip_reasons.append(reason)
        pytest.skip(reason)


def _cluster(*, replica: bool) -> Iterator[PgCluster]:
    with PgCluster(replica=replica) as cluster:
        try:
            yield cluster
        finally:  # shown by pytest only when the test failed
            for log in sorted(cluster.root.glob("**/*.log")):
                lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
                print(f"--- {log.relative_to(cluster.root)}", *lines, sep="\n")


@pytest.fixture
def pg_primary() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL server (no replica) of this test's own."""
    _skip_if_missing()
    yield from _cluster(replica=False)


@pytest.fixture
def pg_pair() -> Iterator[PgCluster]:
    """A throwaway primary and a replica streaming from it, of this test's own."""
    _skip_if_missing()
    yield from _cluster(replica=True)


@pytest.fixture
def pgbouncer_installed() -> None:
    """Skips the test where PgBouncer is not installed."""
    _skip_if_missing(pgbouncer=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in dict.fromkeys(_skip_reasons):
        terminalreporter.write_line(f"Throwaway-cluster tests skipped: {reason}", yellow=True)
