"""Request ids, the access log and the request metrics, in one pure ASGI middleware.

Per request: take the client's ``X-Request-ID`` when it is sane (1..128 characters from a safe
set), else make one; put it in ``heroes_api.logs.request_id`` (so every log line written while the
request runs carries it) and on the response, errors and 413s included (this middleware wraps
the body-size limit). When the answer is done: one access-log line and the request metrics,
labelled with the route template (``scope["route"]``, set by routing), never the raw path.
"""

import itertools
import os
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heroes_api.logs import access_logger, request_id
from heroes_api.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:=+/@-]{1,128}")
UNMATCHED = "<unmatched>"  # no route matched (a 404 from routing): one label for all of them


class _Ids:
    """Fresh request ids: 16 random hex digits per process, a dash, a counter in hex
    (``9f86d081884c7d65-2a``). Unique across processes and restarts like a UUID, at a sixth of
    uuid4's cost (0.5 us against 3.3 us: no system call per request). A forked child starts a
    prefix of its own."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8) + "-"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_ids = _Ids()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if SANE_REQUEST_ID.fullmatch(value):
                sane: str = value.decode("ascii")
                return sane
            break
    return _ids.next()


class Observe:
    def __init__(self, app: ASGIApp, *, metrics: Metrics | None, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        request_id.set(rid)
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        status = 500  # unless a response starts: an exception that escapes is answered 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED)
            method = scope["method"]
            if metrics is not None:
                metrics.in_flight.dec()
                metrics.observe_request(method, template, status, seconds)
            if self.access_log:
                self._log(scope, method, template, status, seconds)

    @staticmethod
    def _log(scope: Scope, method: str, route: str, status: int, seconds: float) -> None:
        duration_ms = round(seconds * 1000, 2)
        client = scope.get("client")
        address = client[0] if client else "-"
        access_logger.info(
            "%s %s %d %.2fms %s",
            method,
            route,
            status,
            duration_ms,
            address,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "client": address,
            },
        )
