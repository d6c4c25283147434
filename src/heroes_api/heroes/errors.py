"""The hero errors: what the hero service raises, each with its status and detail."""

from heroes_api.errors import AppError


class HeroNotFound(AppError):
    status_code = 404
    detail = "Hero not found"


class PreconditionFailed(AppError):
    status_code = 412
    detail = "Hero has changed since the ETag in If-Match: read it again, then retry"


class IdempotencyKeyReused(AppError):
    """An ``Idempotency-Key`` sent again with a different request (method, route, hero, body)."""

    status_code = 422
    detail = "Idempotency-Key was already used for a different request"


class IdempotencyKeyInFlight(AppError):
    """Another request with this ``Idempotency-Key`` holds it and has not finished."""

    status_code = 409
    detail = "A request with this Idempotency-Key is still in progress: retry shortly"
    retry_after = 1
