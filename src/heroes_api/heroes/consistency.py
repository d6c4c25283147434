"""The HTTP edge of read-your-writes: ``Consistency-Token`` (``heroes_api.replicas``).

With a read replica configured, every successful write's response carries the token, and a read
that sends one back is answered from data at least that new. Without a replica no write carries
one, and a token sent with a read is still checked for its form, then needs nothing.
"""

from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError

from heroes_api.heroes.service import HeroService
from heroes_api.replicas import TOKEN_HEADER, parse_token, token

_RAW = TOKEN_HEADER.lower().encode("latin-1")
PARAMETER: dict[str, Any] = {
    "name": TOKEN_HEADER,
    "in": "header",
    "description": "Optional: the `Consistency-Token` of a write's response. The answer is at "
    "least as new as that write (read-your-writes across replicas and processes).",
    "schema": {"type": "string", "pattern": "^[0-9A-F]{16}$"},
}
RESPONSE_HEADER = {
    TOKEN_HEADER: {
        "description": "With a read replica: send it with later reads to see this write.",
        "schema": {"type": "string"},
    }
}


def read_token(request: Request) -> int | None:
    """The position a read must be at least as new as, or None; a malformed token is a 422
    naming the header."""
    for name, value in request.scope["headers"]:
        if name == _RAW:
            try:
                return parse_token(value.decode("latin-1"))
            except ValueError as error:
                detail = {"type": "value_error", "loc": ("header", TOKEN_HEADER), "msg": str(error)}
                raise RequestValidationError([detail]) from None
    return None


def with_token(service: HeroService, response: Response) -> Response:
    """A write's response, with the token of the writes this process has acknowledged."""
    if (position := service.consistency_token()) is not None:
        response.headers[TOKEN_HEADER] = token(position)
    return response
