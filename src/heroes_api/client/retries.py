"""When to retry a request, and how long to wait first: pure functions, no I/O."""

import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

import httpx

# Answers that say "not now" rather than "no": the request can be sent again unchanged (writes
# carry an Idempotency-Key, so a write the service did carry out is answered, not repeated).
RETRY_STATUSES = frozenset({408, 409, 429, 502, 503, 504})
_DELAY_SECONDS = re.compile(r"[0-9]+")
_MAX_DOUBLINGS = 64  # 2.0 ** retry overflows a float long before a retry count would


def retryable(error: httpx.TransportError) -> bool:
    """A timeout, a connection that could not be made or that dropped: worth another try.
    Not a bad URL, a proxy refusal or a request httpx could not write (``LocalProtocolError``)."""
    return isinstance(
        error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    )


def retry_after(value: str, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (RFC 9110, 10.2.3): delay-seconds, or an
    HTTP-date (``now`` is the Unix time to count from; a date in the past is 0). None when the
    value is neither."""
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: retry ``n`` (from 0) waits a uniformly random
    time in ``[0, min(cap, base * 2**n))``. A ``Retry-After`` the service sent wins, up to
    ``retry_after_cap``."""

    base: float = 0.1
    cap: float = 5.0
    retry_after_cap: float = 30.0

    def delay(self, retry: int, random: Callable[[], float], asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.retry_after_cap)
        return random() * min(self.cap, self.base * 2.0 ** min(retry, _MAX_DOUBLINGS))
