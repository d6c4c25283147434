"""The throwaway clusters themselves: replication, delay, stop/start, kill and promotion."""

import time

import pytest

from tests.pg_cluster import PgCluster

pytestmark = pytest.mark.slow


def test_replica_streams_lags_by_its_delay_and_takes_over(pg_pair: PgCluster) -> None:
    primary, replica = pg_pair.primary, pg_pair.replica
    pg_pair.create_database("heroes")
    assert replica.query("SELECT pg_is_in_recovery()") == "t"
    assert primary.query("SELECT pg_is_in_recovery()") == "f"

    pg_pair.enable_synchronous_replication()
    primary.query("INSERT INTO hero (name, secret_name) VALUES ('Synced', 's')", "heroes")
    # Synchronous commit waits for the replica's flush, not its replay: poll for the row.
    _poll_row(pg_pair, "Synced")

    pg_pair.set_replica_delay(1500)
    started = time.monotonic()
    primary.query("INSERT INTO hero (name, secret_name) VALUES ('Delayed', 's')", "heroes")
    assert _names(pg_pair) == ["Synced"]  # committed on the primary, not yet applied here
    _poll_row(pg_pair, "Delayed")
    assert time.monotonic() - started >= 1.4
    pg_pair.set_replica_delay(0)

    pg_pair.stop_replica()
    assert not replica.is_ready()
    pg_pair.start_replica()
    pg_pair.wait_for_streaming()

    pg_pair.kill_primary()
    assert primary.pid is None
    assert not primary.is_ready()
    pg_pair.promote_replica()
    replica.query("INSERT INTO hero (name, secret_name) VALUES ('Promoted', 's')", "heroes")
    assert _names(pg_pair) == ["Synced", "Delayed", "Promoted"]


def _names(cluster: PgCluster) -> list[str]:
    return cluster.replica.query("SELECT name FROM hero ORDER BY id", "heroes").split()


def _poll_row(cluster: PgCluster, name: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while name not in _names(cluster):
        assert time.monotonic() < deadline, f"{name} never reached the replica"
        time.sleep(0.02)
