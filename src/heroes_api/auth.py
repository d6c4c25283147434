"""API keys (README, "Security"): off by default, so tutorial clients never notice.

With keys set, the routes that need one get the ``APIKey`` dependency: it reads
``Authorization: Bearer <key>`` and compares the key's SHA-256 digest, in constant time, with the
digests of the configured keys; the keys themselves are never kept. Without keys, no route has
the dependency and OpenAPI declares no scheme.
"""

import hmac
import logging
from collections.abc import Callable
from typing import Any, NoReturn

from fastapi import Depends
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from heroes_api.config import BEARER_TOKEN, KeyDigests, key_digest
from heroes_api.errors import AppError, ErrorDetail

logger = logging.getLogger(__name__)

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing, malformed or invalid API key"}
}
# Called with the reason of each refusal (missing, malformed, invalid): the metrics count them.
OnRefusal = Callable[[str], None]


class NotAuthenticated(AppError):
    status_code = 401

    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # RFC 6750 section 3: a bare challenge when no key came, the error code when one did.
        self.headers = {"WWW-Authenticate": f'Bearer error="{error}"' if error else "Bearer"}


class ApiKey(HTTPBearer):
    """The dependency that admits a request holding one of the keys; OpenAPI's ``APIKey``."""

    def __init__(self, digests: KeyDigests, on_refusal: OnRefusal | None = None) -> None:
        super().__init__(
            scheme_name="APIKey",
            description="`Authorization: Bearer <key>`, with one of the service's API keys.",
            auto_error=False,
        )
        self._digests = tuple(digests)
        self._on_refusal = on_refusal

    async def __call__(self, request: HTTPConnection) -> None:
        header = request.headers.get("authorization")
        if header is None:
            detail = "Not authenticated: send Authorization: Bearer <API key>"
            self._refuse(request, "missing", detail)
        scheme, _, key = header.partition(" ")
        key = key.lstrip(" ")
        if scheme.lower() != "bearer" or not BEARER_TOKEN.fullmatch(key):
            self._refuse(request, "malformed", "Malformed Authorization header", "invalid_request")
        if not self._admits(key):
            self._refuse(request, "invalid", "Invalid API key", "invalid_token")

    def _admits(self, key: str) -> bool:
        digest = key_digest(key)
        admitted = False
        for known in self._digests:  # no early exit: the time says nothing about which key
            admitted |= hmac.compare_digest(digest, known)
        return admitted

    def _refuse(
        self, request: HTTPConnection, reason: str, detail: str, error: str | None = None
    ) -> NoReturn:
        """Log and count a refusal (``reason``: missing, malformed, invalid), then answer 401."""
        route = getattr(request.scope.get("route"), "path", "?")
        logger.warning("authentication failed (%s): %s %s", reason, request.scope["method"], route)
        if self._on_refusal is not None:
            self._on_refusal(reason)
        raise NotAuthenticated(detail, error)


def key_guard(digests: KeyDigests, on_refusal: OnRefusal | None = None) -> dict[str, Any]:
    """``include_router`` arguments that put a router's routes behind the keys (none: open)."""
    if not digests:
        return {}
    return {"dependencies": [Depends(ApiKey(digests, on_refusal))], "responses": UNAUTHORIZED}
