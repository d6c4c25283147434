"""Reads from a PostgreSQL replica that are never staler than their reader may see.

Positions are WAL positions (LSNs) as integers. A write batch, once committed, reads the
primary's position (one query a batch, after COMMIT: a position read inside the transaction can
be ahead of what a replica shows); its responses carry it as the ``Consistency-Token``. A read
that carries a token needs the replica to have replayed past it; a read without one needs the
newest position this process committed (so a process reads its own writes) and a replica that
lags the primary by at most ``HEROES_READ_MAX_LAG`` seconds.

The replica is asked how far it has replayed in a statement of its own, before the data query
on the same connection. A server's position only grows, so the last one seen on a connection
is a lower bound for that connection's server (and for it only: a multi-host URL, or a load
balancer in front of several replicas, may connect to replicas that are at different
positions): while it covers every read of a batch (and is recent enough for the lag rule), no
question is asked. A
replica that is down, or still behind after ``HEROES_READ_FRESH_WAIT``, sends its reads to the
primary; a replica that failed is left alone for a second before it is tried again.
"""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.db import SessionMaker, translate_errors
from heroes_api.errors import DatabaseError

TOKEN_HEADER = "Consistency-Token"
_TOKEN = re.compile(r"[0-9A-F]{16}")
PRIMARY_POSITION = text("SELECT pg_current_wal_lsn() - '0/0'")
# How far a replica has replayed, and how many seconds its replay trails the primary (0 when it
# has replayed everything it received). A primary given as a replica is as new as can be. After
# a restart a replica receives from the start of a WAL segment, behind what it replayed already:
# its receive position is then <= (not =) its replay position until new WAL arrives.
REPLICA_POSITION = text(
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END - '0/0', "
    "CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() "
    "THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)
T = TypeVar("T")
POLL_SECONDS = 0.005  # while a token read waits for the replica
LAG_VALID_SECONDS = 0.5  # a lag reading older than this is measured again
RETRY_DOWN_SECONDS = 1.0  # a replica that failed is tried again after this


def token(position: int) -> str:
    """A position as clients see it: 16 hex digits, so that tokens compare as strings."""
    return f"{position:016X}"


def parse_token(value: str) -> int:
    """The position in a token; a ValueError for anything else."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{TOKEN_HEADER} must be 16 hexadecimal digits (0-9, A-F)")
    return int(value, 16)


async def primary_position(session: AsyncSession) -> int:
    return int((await session.exec(PRIMARY_POSITION)).scalar_one())  # type: ignore[call-overload]


@dataclass(frozen=True)
class _Seen:
    """A connection's server as last measured on it."""

    position: int = 0
    lag: float = float("inf")
    at: float = float("-inf")  # time.monotonic() of the reading


_SEEN = "heroes_api.replica_seen"  # the key of a connection's _Seen in its info dictionary
_NEVER = _Seen()


class Replica:
    def __init__(
        self,
        sessions: SessionMaker,
        *,
        fresh_wait: float,
        max_lag: float,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        """``on_lag(seconds)`` is told every lag measured (metrics)."""
        self._sessions = sessions
        self._fresh_wait = fresh_wait
        self._max_lag = max_lag
        self._on_lag = on_lag
        self.committed = 0  # the newest position this process's writes committed
        self._down_until = float("-inf")

    def note_commit(self, position: int) -> None:
        self.committed = max(self.committed, position)

    def need(self, tokens: Sequence[int | None]) -> list[int]:
        """The position each read needs: its token, or this process's last commit."""
        return [self.committed if t is None else max(t, 0) for t in tokens]

    async def read(
        self,
        tokens: Sequence[int | None],
        query: Callable[[AsyncSession, list[int]], Awaitable[T]],
    ) -> tuple[list[int], T | None]:
        """Run ``query(session, fresh)`` on the replica for the reads it is fresh enough for
        (``tokens``: each read's token or None; ``fresh``: their indexes); those indexes and
        the query's result. ``([], None)`` when it is fresh for none, or down: a failure marks
        it down, and the caller reads everything from the primary."""
        if time.monotonic() < self._down_until:
            return [], None
        try:
            with translate_errors():
                async with self._sessions() as session:
                    ok = await self._fresh(session, tokens)
                    fresh = [i for i, fresh_enough in enumerate(ok) if fresh_enough]
                    return (fresh, await query(session, fresh)) if fresh else ([], None)
        except DatabaseError:
            self._down_until = time.monotonic() + RETRY_DOWN_SECONDS
            return [], None

    async def _fresh(self, session: AsyncSession, tokens: Sequence[int | None]) -> list[bool]:
        """Whether the replica is fresh enough for each read: past its token; or, without one,
        past this process's last commit and within ``max_lag`` (the lag rule is for token-less
        reads only: a token says exactly how new the answer must be)."""
        needs = self.need(tokens)
        info = (await session.connection()).info  # the connection's own: one server's
        seen: _Seen = info.get(_SEEN, _NEVER)
        if max(needs) > seen.position or time.monotonic() - seen.at > LAG_VALID_SECONDS:
            seen = await self._measure(session, seen)
            deadline = time.monotonic() + self._fresh_wait
            while max(needs) > seen.position and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
                seen = await self._measure(session, seen)
            info[_SEEN] = seen
        lag_ok = seen.lag <= self._max_lag
        return [
            need <= seen.position and (lag_ok or t is not None)
            for need, t in zip(needs, tokens, strict=True)
        ]

    async def _measure(self, session: AsyncSession, seen: _Seen) -> _Seen:
        position, lag = (await session.exec(REPLICA_POSITION)).one()  # type: ignore[call-overload]
        lag = float(lag or 0)
        if self._on_lag is not None:
            self._on_lag(lag)
        return _Seen(max(seen.position, int(position)), lag, time.monotonic())
