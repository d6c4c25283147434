"""The HTTP edge of ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header-07).

A write may carry the header; the key, scoped to the API key that sent it, and a fingerprint of
what the write asked for go to the hero service, which stores the answer in the write's own
transaction and replays it for a repeat (``heroes_api.heroes.service``). Without the header
nothing here runs beyond one scan of the request's headers.
"""

import hashlib
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic_core import to_json

from heroes_api.config import key_digest
from heroes_api.errors import ErrorDetail
from heroes_api.heroes.keyed import Answer
from heroes_api.heroes.repository.keys import RequestKey
from heroes_api.state import app_state

HEADER = "Idempotency-Key"
_RAW = HEADER.lower().encode("latin-1")
# 1 to 255 visible ASCII characters, bare or as the draft's quoted string ("abc" is abc).
_BARE = re.compile(r"[!#-~]{1,255}")  # no double quote
_QUOTED = re.compile(r'"([!#-\[\]-~]{1,255})"')
MUST = "must be 1 to 255 visible ASCII characters, bare or in double quotes, sent once"


POLICY = (
    "Optional. Send the same key when you retry this write: a repeat of a request that "
    "succeeded gets the first answer back (status, body and ETag, plus "
    "`Idempotent-Replayed: true`) and writes nothing again, even if the hero has changed "
    f"since. A key {MUST}. Keys are kept for `HEROES_IDEMPOTENCY_TTL` seconds (24 hours by "
    "default) after the write, then count as never used; they belong to the API key that sent "
    "them. Reusing a key for a different request (method, route, hero or body) is a 422. A "
    "repeat sent while the first is being written waits for it and gets its answer, or, if "
    "another process holds the key, 409 with `Retry-After`. Only successes are kept: after a "
    "4xx or 5xx the same key may be sent again."
)
PARAMETER = {
    "name": HEADER,
    "in": "header",
    "description": POLICY,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 257,
        "pattern": r'^(?:[!#-~]{1,255}|"[!#-\[\]-~]{1,255}")$',
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorDetail,
        "description": "Another request with this Idempotency-Key is still being written; "
        "retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    422: {
        "description": "Validation error, a malformed Idempotency-Key, or a key already used "
        "for a different request",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/HTTPValidationError"},
                        {"$ref": "#/components/schemas/ErrorDetail"},
                    ]
                }
            }
        },
    },
}


def request_key(
    request: Request, target: str, body: Callable[[], Any] = lambda: None
) -> RequestKey | None:
    """The write's key, scope and fingerprint, or None without the header. ``target``: the
    method, route and hero the write is for; ``body()``: its validated body (asked for only
    when there is a key)."""
    values = [value for name, value in request.scope["headers"] if name == _RAW]
    if not values:
        return None
    text = values[0].decode("latin-1")
    quoted = _QUOTED.fullmatch(text)
    key = quoted[1] if quoted else text
    if len(values) > 1 or not (quoted or _BARE.fullmatch(key)):
        error = {"type": "value_error", "loc": ("header", HEADER), "msg": f"{HEADER} {MUST}"}
        raise RequestValidationError([error])
    fingerprint = hashlib.sha256(target.encode() + b"\0" + to_json(body())).hexdigest()
    return RequestKey(_scope(request), key, fingerprint)


def _scope(request: Request) -> str:
    """Whose key it is: a digest of the API key that sent it, or "" when there are no keys (the
    key guard has already admitted the request)."""
    if not app_state(request.app).settings.api_keys:
        return ""
    _, _, api_key = request.headers.get("authorization", "").partition(" ")
    return key_digest(api_key.strip()).hex()


def sent(answer: Answer) -> Response:
    """A keyed write's answer: the same status, body bytes and ETag as the first time."""
    headers = {"ETag": answer.etag} if answer.etag else {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(answer.body, answer.status, headers, media_type="application/json")
