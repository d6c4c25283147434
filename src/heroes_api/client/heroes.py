"""HeroesClient: the service's operations, each one call that retries what is safe to retry."""

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import httpx

import heroes_api.client.answers as answers
import heroes_api.client.consistency as consistency
from heroes_api.client.answers import Hero
from heroes_api.client.errors import (
    HeroesError,
    PreconditionFailed,
    Unavailable,
    error_for,
)
from heroes_api.client.retries import RETRY_STATUSES, Backoff, retry_after, retryable


class HeroChanges(TypedDict, total=False):
    """What ``update`` may change; ``age=None`` clears the age."""

    name: str
    age: int | None
    secret_name: str


_CHANGEABLE = frozenset(HeroChanges.__annotations__)


class HeroesClient:
    """An async client for the heroes service::

        async with HeroesClient("http://127.0.0.1:8000", api_key=key) as heroes:
            hero = await heroes.create(name="Deadpond", secret_name="Dive Wilson")

    Every call retries timeouts, connection errors and 408/409/429/502/503/504 up to
    ``max_retries`` times, waiting with exponential backoff and full jitter (``backoff_base``
    doubling up to ``backoff_cap`` seconds) or as long as the answer's ``Retry-After`` asks (up
    to ``retry_after_cap``); then it raises. Every write carries an ``Idempotency-Key`` made once
    per call and sent on each of its attempts, so a retried write is not carried out twice.
    The newest ``Consistency-Token`` received is sent with every later request.

    ``timeout`` applies to each attempt. With ``http_client`` the client uses that
    ``httpx.AsyncClient`` (and leaves it open); otherwise it owns one. ``sleep``, ``random``
    (uniform in [0, 1)) and ``clock`` (Unix time, for ``Retry-After`` dates) are for tests.
    """

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        http_client: httpx.AsyncClient | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        retry_after_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        base = httpx.URL(base_url)
        # Paths are joined onto the base's path, so a service mounted at /api/ keeps its prefix.
        self._base = base.copy_with(path=base.path.rstrip("/") + "/", query=None, fragment=None)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}
        self._timeout = timeout
        self._max_retries = max_retries
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._backoff = Backoff(backoff_base, backoff_cap, retry_after_cap)
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self._token: str | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def consistency_token(self) -> str | None:
        """The newest ``Consistency-Token`` received, sent with every request; None before."""
        return self._token

    async def create(self, *, name: str, secret_name: str, age: int | None = None) -> Hero:
        body = {"name": name, "secret_name": secret_name, "age": age}
        return answers.hero(await self._write("POST", self._url("heroes/"), body, None))

    async def get(self, hero_id: int, /) -> Hero:
        """The hero; ``NotFound`` if there is none."""
        return answers.hero(await self._send("GET", self._url(f"heroes/{hero_id:d}")))

    async def update(
        self,
        hero_id: int,
        /,
        *,
        if_match: str | Hero | None = None,
        **changes: Unpack[HeroChanges],
    ) -> Hero:
        """Change only the fields passed (``age=None`` clears the age). With ``if_match`` (an
        ETag, or a Hero read earlier), only if the hero has not changed since; else
        ``PreconditionFailed``."""
        unknown = changes.keys() - _CHANGEABLE
        if unknown:
            raise TypeError(f"update() got unknown field(s): {', '.join(sorted(unknown))}")
        url = self._url(f"heroes/{hero_id:d}")
        return answers.hero(await self._write("PATCH", url, dict(changes), if_match))

    async def delete(self, hero_id: int, /, *, if_match: str | Hero | None = None) -> None:
        await self._write("DELETE", self._url(f"heroes/{hero_id:d}"), None, if_match)

    async def modify(
        self, hero_id: int, /, fn: Callable[[Hero], Mapping[str, Any]], *, attempts: int = 5
    ) -> Hero:
        """Read the hero, ``PATCH`` the changes ``fn(hero)`` returns if it is still as read;
        when it changed meanwhile, read it again and call ``fn`` again, ``attempts`` times in
        all, then raise the last ``PreconditionFailed``."""
        for attempt in range(1, attempts + 1):
            hero = await self.get(hero_id)
            try:
                return await self.update(hero_id, if_match=hero, **fn(hero))
            except PreconditionFailed:
                if attempt == attempts:
                    raise
        raise ValueError("attempts must be at least 1")

    async def list(
        self,
        *,
        name: str | None = None,
        min_age: int | None = None,
        max_age: int | None = None,
        limit: int = 100,
    ) -> AsyncIterator[Hero]:
        """Every matching hero in id order, page by page (``limit`` a page), following each
        page's ``Link: <...>; rel="next"`` until a page has none."""
        query = {"limit": limit, "name": name, "min_age": min_age, "max_age": max_age}
        params = {key: value for key, value in query.items() if value is not None}
        url: httpx.URL | None = self._url("heroes/").copy_merge_params(params)
        while url is not None:
            response = await self._send("GET", url)
            for hero in answers.page(response):
                yield hero
            url = answers.next_page(response)

    def _url(self, path: str) -> httpx.URL:
        return self._base.join(path)

    async def _write(
        self, method: str, url: httpx.URL, body: dict[str, Any] | None, if_match: str | Hero | None
    ) -> httpx.Response:
        """A write: one Idempotency-Key (an RFC 8941 string, as the draft standard has it)
        for every attempt of this call."""
        headers = {"Idempotency-Key": f'"{uuid.uuid4().hex}"'}
        if if_match is not None:
            headers["If-Match"] = _etag(if_match)
        return await self._send(method, url, body, headers)

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        body: dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The successful answer, after up to ``max_retries`` retries; else the error."""
        headers = {**self._headers, **(extra_headers or {})}
        retry = 0
        while True:
            if self._token is not None:
                headers[consistency.HEADER] = self._token
            try:
                response = await self._http.request(
                    method, url, json=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as error:
                if not retryable(error):
                    raise HeroesError(f"{type(error).__name__}: {error}") from error
                if retry == self._max_retries:
                    raise Unavailable(f"{type(error).__name__}: {error}") from error
                asked = None
            else:
                received = response.headers.get(consistency.HEADER)
                self._token = consistency.newest(self._token, received)
                if response.is_success:
                    return response
                if response.status_code not in RETRY_STATUSES or retry == self._max_retries:
                    raise error_for(response)
                header = response.headers.get("Retry-After")
                asked = None if header is None else retry_after(header, self._clock())
            await self._sleep(self._backoff.delay(retry, self._random, asked))
            retry += 1


def _etag(if_match: str | Hero) -> str:
    if isinstance(if_match, str):
        return if_match
    if if_match.etag is None:
        raise ValueError("this Hero has no ETag (list pages carry none): get() it first")
    return if_match.etag
