"""Read-your-writes tokens: which ``Consistency-Token`` a client should send next.

A token is exactly 16 uppercase hex digits (a PostgreSQL WAL position as a zero-padded 64-bit
number), so the newest of two well-formed tokens is the greater string.
"""

import re

HEADER = "Consistency-Token"
_TOKEN = re.compile(r"[0-9A-F]{16}")


def newest(current: str | None, received: str | None) -> str | None:
    """The token to send from now on: ``received`` if it is well formed and newer than
    ``current``, else ``current`` (a malformed token from the service is ignored)."""
    if received is None or not _TOKEN.fullmatch(received):
        return current
    if current is None or received > current:
        return received
    return current
