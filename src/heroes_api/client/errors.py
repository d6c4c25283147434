"""The client's errors: one base, and one class per answer a caller handles differently."""

from typing import Any

import httpx

_DETAIL_CHARS = 200  # of a body that is not the service's JSON (a proxy's HTML page, say)


class HeroesError(Exception):
    """A request the service did not carry out, or whose outcome is unknown.

    ``status_code`` is the answer's HTTP status, or None when no answer arrived (a timeout, a
    dropped connection); ``detail`` is the answer's ``detail`` (a string, or a 422's list of
    errors) or a description; ``request_id`` is the answer's ``X-Request-ID``, the key to the
    service's log lines for it.
    """

    def __init__(
        self, detail: Any, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        status = "no answer" if self.status_code is None else str(self.status_code)
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{status}: {self.detail}{request}"


class NotFound(HeroesError):
    """404: no hero has this id."""


class PreconditionFailed(HeroesError):
    """412: the hero changed since the ETag in ``If-Match``; read it again, then retry."""


class ValidationFailed(HeroesError):
    """422 or 400: the service refused what was sent; ``detail`` says why."""


class Unauthorized(HeroesError):
    """401: the API key is missing, malformed or not one the service accepts."""


class Conflict(HeroesError):
    """409, still after every retry: a request with the same Idempotency-Key was in flight."""


class RateLimited(HeroesError):
    """429, still after every retry."""


class Unavailable(HeroesError):
    """502, 503, 504, 408, a timeout or a connection error, still after every retry. For a
    write, whether it happened is unknown."""


class UnexpectedResponse(HeroesError):
    """Any other status, or an answer that is not what the service sends."""


_BY_STATUS: dict[int, type[HeroesError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    404: NotFound,
    408: Unavailable,
    409: Conflict,
    412: PreconditionFailed,
    422: ValidationFailed,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(response: httpx.Response) -> HeroesError:
    """The error an answer that is not a success stands for."""
    try:
        body = response.json()
    except ValueError:  # not JSON, or not text at all
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
    else:
        detail = response.text[:_DETAIL_CHARS] or response.reason_phrase
    error = _BY_STATUS.get(response.status_code, UnexpectedResponse)
    return error(
        detail,
        status_code=response.status_code,
        request_id=response.headers.get("x-request-id"),
    )


def unexpected(response: httpx.Response, what: str) -> UnexpectedResponse:
    """A successful status whose answer this client cannot use."""
    return UnexpectedResponse(
        what, status_code=response.status_code, request_id=response.headers.get("x-request-id")
    )
