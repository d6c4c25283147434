"""A warning, once, when writes that need no key arrive on a public address.

A pure ASGI middleware, installed only when no API key is set. It reads the address each request
came in on (``scope["server"]``), which every ASGI server reports, so it works the same under
uvicorn, gunicorn or a test transport; the process's command line is never read.
"""

import ipaddress
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

OPEN_WRITES = "writes are open to anyone who reaches %s: set HEROES_API_KEYS (README, 'Security')"


class OpenWritesWarning:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.warned = False
        self.seen: set[str] = set()  # addresses already judged: a server listens on few

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.warned and scope["type"] == "http":
            host = (scope.get("server") or ("",))[0]
            if host not in self.seen:
                self.seen.add(host)
                if _is_public(host):
                    self.warned = True
                    logger.warning(OPEN_WRITES, host)
        await self.app(scope, receive, send)


def _is_public(host: str) -> bool:
    """Whether an address is an IP that is not loopback (0.0.0.0 is public; names: unknown)."""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
