"""Reading the service's answers: heroes, pages of heroes, and the link to the next page."""

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from heroes_api.client.errors import unexpected


class Hero(BaseModel):
    """A hero as the service shows it (never its secret name). ``etag`` is the answer's
    ``ETag``: single-hero reads and writes carry one, list pages do not."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    age: int | None
    etag: str | None = None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise unexpected(response, "the answer is not JSON") from error


def hero(response: httpx.Response) -> Hero:
    body = _json(response)
    if not isinstance(body, dict):
        raise unexpected(response, "the answer is not a hero")
    try:
        return Hero.model_validate({**body, "etag": response.headers.get("ETag")})
    except ValidationError as error:
        raise unexpected(response, "the answer is not a hero") from error


def page(response: httpx.Response) -> list[Hero]:
    body = _json(response)
    try:
        return [Hero.model_validate(item) for item in body]
    except (TypeError, ValidationError) as error:
        raise unexpected(response, "the answer is not a list of heroes") from error


def next_page(response: httpx.Response) -> httpx.URL | None:
    """The URL of the page after this one (RFC 8288 ``rel="next"``, resolved against this
    page's URL), or None. One on another origin is refused: it would be sent the API key."""
    here = response.request.url
    for link in response.links.values():
        if "next" in link.get("rel", "").lower().split():
            url = here.join(link.get("url", ""))
            if (url.scheme, url.host, url.port) != (here.scheme, here.host, here.port):
                raise unexpected(response, f"the next page is on another origin: {url}")
            if url == here:
                raise unexpected(response, "the next page is this page")
            return url
    return None
