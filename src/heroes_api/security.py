"""API keys and CORS (README, "Security"): both off by default, so tutorial clients never notice.

With keys set, the routes that need one get the ``APIKey`` dependency: it reads
``Authorization: Bearer <key>`` and compares the key's SHA-256 digest, in constant time, with the
digests of the configured keys; the keys themselves are never kept. Without keys, no route has
the dependency and OpenAPI declares no scheme.
"""

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fastapi import Depends
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heroes_api.errors import AppError, ErrorDetail

logger = logging.getLogger(__name__)

KeyDigests = frozenset[bytes]
MIN_KEY_LENGTH = 16
# RFC 6750's b64token: everything a Bearer credential can carry.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ORIGIN = re.compile(r"https?://[^/?#\s]+")
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing, malformed or invalid API key"}
}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_digests(keys: Iterable[str], source: str) -> KeyDigests:
    """Digests of the keys, or a ValueError that says which key is unusable (never the key).

    A blank ``source`` as a whole means no key: ``HEROES_API_KEYS=`` is how compose files unset.
    """
    keys = [key.strip() for key in keys]
    if keys == [""]:
        return frozenset()
    for number, key in enumerate(keys, 1):
        if not key:
            raise ValueError(f"{source}: key {number} is empty")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{source}: key {number} is shorter than {MIN_KEY_LENGTH} characters")
        if not _TOKEN.fullmatch(key):
            raise ValueError(
                f"{source}: key {number} has a character a Bearer token cannot carry "
                "(letters, digits and -._~+/ only, then = padding)"
            )
    return frozenset(map(_digest, keys))


def read_key_file(path: Path) -> KeyDigests:
    """Digests of a key file's keys: one a line, blank lines skipped (container secrets)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError as exc:
        raise ValueError(f"HEROES_API_KEYS_FILE cannot be read: {path}: {exc.strerror}") from None
    keys = [line for line in text.splitlines() if line.strip()]
    if not keys:
        raise ValueError(f"HEROES_API_KEYS_FILE holds no key: {path}")
    return key_digests(keys, "HEROES_API_KEYS_FILE")


def cors_origins(text: str) -> tuple[str, ...]:
    """The origins in a comma-separated list; one that no browser can send is a ValueError."""
    origins = tuple(origin.strip().lower() for origin in text.split(",") if origin.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"HEROES_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path)"
            )
    return origins


class NotAuthenticated(AppError):
    status_code = 401

    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # RFC 6750 section 3: a bare challenge when no key came, the error code when one did.
        self.headers = {"WWW-Authenticate": f'Bearer error="{error}"' if error else "Bearer"}


class ApiKey(HTTPBearer):
    """The dependency that admits a request holding one of the keys; OpenAPI's ``APIKey``."""

    def __init__(self, digests: KeyDigests) -> None:
        super().__init__(
            scheme_name="APIKey",
            description="`Authorization: Bearer <key>`, with one of the service's API keys.",
            auto_error=False,
        )
        self._digests = tuple(digests)

    async def __call__(self, request: HTTPConnection) -> None:
        header = request.headers.get("authorization")
        if header is None:
            detail = "Not authenticated: send Authorization: Bearer <API key>"
            self._refuse(request, "missing", detail)
        scheme, _, key = header.partition(" ")
        key = key.lstrip(" ")
        if scheme.lower() != "bearer" or not _TOKEN.fullmatch(key):
            self._refuse(request, "malformed", "Malformed Authorization header", "invalid_request")
        if not self._admits(key):
            self._refuse(request, "invalid", "Invalid API key", "invalid_token")

    def _admits(self, key: str) -> bool:
        digest = _digest(key)
        admitted = False
        for known in self._digests:  # no early exit: the time says nothing about which key
            admitted |= hmac.compare_digest(digest, known)
        return admitted

    @staticmethod
    def _refuse(
        request: HTTPConnection, reason: str, detail: str, error: str | None = None
    ) -> NoReturn:
        """Log and count a refusal (``reason``: missing, malformed, invalid), then answer 401."""
        route = getattr(request.scope.get("route"), "path", "?")
        logger.warning("authentication failed (%s): %s %s", reason, request.scope["method"], route)
        if (metrics := request.app.state.metrics) is not None:
            metrics.auth_failures.labels(reason).inc()
        raise NotAuthenticated(detail, error)


def key_guard(digests: KeyDigests) -> dict[str, Any]:
    """``include_router`` arguments that put a router's routes behind the keys (none: open)."""
    if not digests:
        return {}
    return {"dependencies": [Depends(ApiKey(digests))], "responses": UNAUTHORIZED}


class Cors(CORSMiddleware):
    """Starlette's CORS for the API's methods and headers, except that a request from an origin
    not allowed gets no CORS header at all (Starlette's would still list methods and headers)."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["Link", "X-Request-ID", "ETag"],
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(request_headers["origin"]):
            return JSONResponse(
                {"detail": "Disallowed CORS origin"}, status_code=400, headers={"Vary": "Origin"}
            )
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        cors = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        return JSONResponse({"detail": bytes(response.body).decode()}, 400, headers=cors)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin):
            await super().send(message, send, request_headers)
            return
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).add_vary_header("Origin")
        await send(message)


OPEN_WRITES = "writes are open to anyone who reaches %s: set HEROES_API_KEYS (README, 'Security')"


def command_line_host(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The address uvicorn's command line listens on: ``--host``, else ``UVICORN_HOST``, else its
    default 127.0.0.1. None when this process is not uvicorn's CLI (then the app cannot know
    before a request comes) or listens on a socket it was handed (``--uds``, ``--fd``)."""
    program = Path(argv[0]) if argv else Path()
    if "uvicorn" not in (program.name, program.parent.name):
        return None
    host = environ.get("UVICORN_HOST", "127.0.0.1")
    for position, arg in enumerate(argv):
        if arg.split("=")[0] in ("--uds", "--fd"):
            return None
        if arg == "--host" and position + 1 < len(argv):
            host = argv[position + 1]
        elif arg.startswith("--host="):
            host = arg.removeprefix("--host=")
    return host


def warn_if_public(host: str) -> None:
    if _is_public(host):
        logger.warning(OPEN_WRITES, host)


class OpenWritesWarning:
    """Warns once when a request arrives on a non-loopback address while writes need no key:
    for servers whose listening address the app cannot read at startup (see main.lifespan)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.warned and scope["type"] == "http":
            host = (scope.get("server") or ("",))[0]
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
