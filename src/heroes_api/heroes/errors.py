"""The hero errors: what the hero service raises, each with its status and detail."""

from heroes_api.errors import AppError


class HeroNotFound(AppError):
    status_code = 404
    detail = "Hero not found"


class PreconditionFailed(AppError):
    status_code = 412
    detail = "Hero has changed since the ETag in If-Match: read it again, then retry"
