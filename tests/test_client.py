"""heroes_api.client: retries, backoff, idempotency keys and tokens against a scripted service
(httpx.MockTransport, an injected sleep: nothing really waits), then every operation against
the real app on each backend."""

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from heroes_api.app import create_app
from heroes_api.client import (
    Conflict,
    Hero,
    HeroesClient,
    HeroesError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    ValidationFailed,
)
from heroes_api.client.retries import Backoff, retry_after
from heroes_api.config import Settings
from tests.helpers import running_client

BASE = "http://heroes.test"
HERO = {"id": 7, "name": "Deadpond", "age": 30}
KEY = re.compile(r'"[0-9a-f]{32}"')  # an RFC 8941 string holding a uuid4's hex
NOW = 1_800_000_000.0  # the injected clock's Unix time

Answer = Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = HERO, **headers: str) -> Answer:
    """An answer: ``reply(503, {"detail": "..."}, retry_after="2")``; header names use _."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return lambda request: httpx.Response(status, json=body, headers=named)


def fail(error: type[httpx.TransportError]) -> Answer:
    """An answer that never comes: httpx raises ``error`` for the request."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise error("scripted failure", request=request)

    return answer


class Service:
    """A scripted service: gives its answers in order (the last one again and again), and
    records the requests it got and the delays the client slept."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @asynccontextmanager
    async def client(self, **options: Any) -> AsyncIterator[HeroesClient]:
        """A HeroesClient on this service: jitter fixed at 0.5, the clock at NOW."""
        options = {"random": lambda: 0.5, "clock": lambda: NOW, **options}
        transport = httpx.MockTransport(self)
        async with (
            httpx.AsyncClient(transport=transport) as http,
            HeroesClient(BASE, http_client=http, sleep=self.sleep, **options) as heroes,
        ):
            yield heroes

    def headers(self, name: str) -> list[str | None]:
        return [request.headers.get(name) for request in self.requests]

    def bodies(self) -> list[Any]:
        return [
            json.loads(request.content) if request.content else None for request in self.requests
        ]


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, UTC), usegmt=True)


# --- Retry-After and backoff: the pure parts --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("86400", 86400.0),
        (http_date(12), 12.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850 form, in the past
        (http_date(-60), 0.0),
        (datetime.fromtimestamp(NOW + 3, UTC).strftime("%a %b %e %H:%M:%S %Y"), 3.0),  # asctime
        ("-3", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str, seconds: float | None) -> None:
    assert retry_after(value, NOW) == seconds


def test_an_asctime_retry_after_is_gmt_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asctime = datetime.fromtimestamp(NOW + 3, UTC).strftime("%a %b %e %H:%M:%S %Y")
    monkeypatch.setenv("TZ", "EST5")  # a POSIX zone string: no zoneinfo files needed
    time.tzset()
    try:
        assert time.timezone == 5 * 3600
        assert retry_after(asctime, NOW) == 3.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    highest = [backoff.delay(retry, lambda: 1.0, None) for retry in range(9)]
    assert highest == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert [backoff.delay(retry, lambda: 0.0, None) for retry in range(9)] == [0.0] * 9
    assert backoff.delay(3, lambda: 0.25, None) == pytest.approx(0.2)
    assert backoff.delay(10_000, lambda: 1.0, None) == 5.0  # no overflow however many retries


async def test_retries_wait_longer_each_time_within_the_jitter_bounds() -> None:
    draws = iter([0.999, 0.0, 0.5, 0.999, 0.999])
    service = Service(reply(503, {"detail": "Database unavailable"}))
    async with service.client(max_retries=5, random=lambda: next(draws)) as heroes:
        with pytest.raises(Unavailable):
            await heroes.get(7)
    assert len(service.requests) == 6
    assert service.sleeps == pytest.approx([0.0999, 0.0, 0.2, 0.7992, 1.5984])


@pytest.mark.parametrize(
    ("header", "options", "delay"),
    [
        ("2", {}, 2.0),
        ("0", {}, 0.0),
        ("120", {}, 30.0),  # capped at the default
        ("120", {"retry_after_cap": 10.0}, 10.0),
        (http_date(4), {}, 4.0),
        (http_date(3600), {}, 30.0),
        ("later", {}, 0.05),  # unreadable: the backoff's own delay (0.5 * 0.1)
    ],
)
async def test_retry_after_is_honoured_up_to_its_cap(
    header: str, options: dict[str, Any], delay: float
) -> None:
    service = Service(reply(503, {"detail": "busy"}, retry_after=header), reply())
    async with service.client(**options) as heroes:
        assert await heroes.get(7) == Hero(**HERO)
    assert service.sleeps == pytest.approx([delay])


# --- What is retried, and what is raised --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, Unavailable),
        (409, Conflict),
        (429, RateLimited),
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
    ],
)
async def test_transient_statuses_are_retried_then_raised(
    status: int, error: type[HeroesError]
) -> None:
    service = Service(reply(status, {"detail": "not now"}, x_request_id="req-1"))
    async with service.client(max_retries=3) as heroes:
        with pytest.raises(error) as raised:
            await heroes.get(7)
    assert len(service.requests) == 4
    assert len(service.sleeps) == 3
    assert raised.value.status_code == status
    assert raised.value.detail == "not now"
    assert raised.value.request_id == "req-1"


async def test_a_transient_status_then_success_returns_the_answer() -> None:
    service = Service(reply(503, {"detail": "busy"}), reply(502, {"detail": "gateway"}), reply())
    async with service.client() as heroes:
        assert await heroes.get(7) == Hero(**HERO)
    assert len(service.requests) == 3
    assert len(service.sleeps) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ValidationFailed),
        (401, Unauthorized),
        (403, UnexpectedResponse),
        (404, NotFound),
        (412, PreconditionFailed),
        (422, ValidationFailed),
        (500, UnexpectedResponse),
    ],
)
async def test_other_statuses_are_raised_at_once(status: int, error: type[HeroesError]) -> None:
    service = Service(reply(status, {"detail": "no"}, x_request_id="req-2"), reply())
    async with service.client() as heroes:
        with pytest.raises(error) as raised:
            await heroes.update(7, age=31)
    assert len(service.requests) == 1
    assert service.sleeps == []
    assert (raised.value.status_code, raised.value.detail) == (status, "no")
    assert raised.value.request_id == "req-2"
    assert str(raised.value) == f"{status}: no (request id req-2)"


async def test_an_error_that_is_not_the_services_json_keeps_its_text() -> None:
    service = Service(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    async with service.client(max_retries=0) as heroes:
        with pytest.raises(Unavailable) as raised:
            await heroes.get(7)
    assert raised.value.detail == "<html>Bad gateway</html>"
    assert raised.value.request_id is None


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
async def test_timeouts_and_connection_errors_are_retried_then_unavailable(
    error: type[httpx.TransportError],
) -> None:
    service = Service(fail(error))
    async with service.client(max_retries=2) as heroes:
        with pytest.raises(Unavailable) as raised:
            await heroes.create(name="Deadpond", secret_name="Dive Wilson")
    assert len(service.requests) == 3
    assert len(service.sleeps) == 2
    assert raised.value.status_code is None
    assert raised.value.request_id is None
    assert isinstance(raised.value.__cause__, error)


async def test_a_dropped_connection_then_success_returns_the_answer() -> None:
    service = Service(fail(httpx.RemoteProtocolError), fail(httpx.ConnectError), reply())
    async with service.client() as heroes:
        assert await heroes.create(name="Deadpond", secret_name="Dive Wilson") == Hero(**HERO)
    assert len(service.requests) == 3


@pytest.mark.parametrize("error", [httpx.UnsupportedProtocol, httpx.LocalProtocolError])
async def test_a_request_that_cannot_be_sent_is_not_retried(
    error: type[httpx.TransportError],
) -> None:
    service = Service(fail(error))
    async with service.client() as heroes:
        with pytest.raises(HeroesError) as raised:
            await heroes.get(7)
    assert type(raised.value) is HeroesError
    assert len(service.requests) == 1


def test_max_retries_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        HeroesClient(BASE, max_retries=-1)


async def test_max_retries_zero_sends_once() -> None:
    service = Service(reply(503))
    async with service.client(max_retries=0) as heroes:
        with pytest.raises(Unavailable):
            await heroes.get(7)
    assert len(service.requests) == 1
    assert service.sleeps == []


# --- Idempotency keys -----------------------------------------------------------------------


async def test_every_attempt_of_a_write_carries_the_same_idempotency_key() -> None:
    flaky = (reply(503), fail(httpx.ReadError), reply(409, retry_after="1"), reply())
    service = Service(*flaky, *flaky, *flaky)
    async with service.client() as heroes:
        await heroes.create(name="Deadpond", secret_name="Dive Wilson")
        await heroes.update(7, age=31)
        await heroes.delete(7)
    keys = service.headers("Idempotency-Key")
    assert len(keys) == 12
    calls = [set(keys[0:4]), set(keys[4:8]), set(keys[8:12])]
    assert all(len(call) == 1 for call in calls)  # one key for every attempt of a call
    assert len(set.union(*calls)) == 3  # and another key for each call
    assert all(key is not None and KEY.fullmatch(key) for key in keys)


async def test_reads_carry_no_idempotency_key() -> None:
    service = Service(reply(503), reply(), reply(body=[HERO]))
    async with service.client() as heroes:
        await heroes.get(7)
        assert [hero async for hero in heroes.list()] == [Hero(**HERO)]
    assert [request.method for request in service.requests] == ["GET"] * 3
    assert service.headers("Idempotency-Key") == [None] * 3


# --- What writes send --------------------------------------------------------------------------


async def test_update_sends_only_the_fields_passed() -> None:
    service = Service(reply())
    async with service.client() as heroes:
        await heroes.update(7, age=None)
        await heroes.update(7, name="Rusty-Man")
        await heroes.update(7, name="Spider-Boy", secret_name="Pedro Parqueador", age=17)
        await heroes.update(7)
    assert service.bodies() == [
        {"age": None},
        {"name": "Rusty-Man"},
        {"name": "Spider-Boy", "secret_name": "Pedro Parqueador", "age": 17},
        {},
    ]
    assert [request.method for request in service.requests] == ["PATCH"] * 4
    assert str(service.requests[0].url) == f"{BASE}/heroes/7"


async def test_update_with_an_unknown_field_is_a_type_error_before_any_request() -> None:
    service = Service(reply())
    async with service.client() as heroes:
        with pytest.raises(TypeError, match="powers"):
            await heroes.update(7, powers="flight")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="id"):
            await heroes.modify(7, lambda hero: {"id": 8})
    assert [request.method for request in service.requests] == ["GET"]  # modify's read only


async def test_create_sends_the_hero_and_returns_it_without_its_secret() -> None:
    answer = {**HERO, "secret_name": "Dive Wilson"}  # were the service ever to leak it
    service = Service(reply(body=answer, etag='"7-1"'))
    async with service.client() as heroes:
        hero = await heroes.create(name="Deadpond", secret_name="Dive Wilson", age=30)
    assert service.bodies() == [{"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}]
    assert (service.requests[0].method, service.requests[0].url.path) == ("POST", "/heroes/")
    assert hero == Hero(id=7, name="Deadpond", age=30, etag='"7-1"')
    assert "secret_name" not in hero.model_dump()
    with pytest.raises(ValueError, match="frozen"):
        hero.age = 31  # type: ignore[misc]


async def test_if_match_is_sent_from_an_etag_or_a_hero() -> None:
    service = Service(reply(etag='"7-3"'))
    async with service.client() as heroes:
        hero = await heroes.get(7)
        await heroes.update(7, if_match=hero, age=31)
        await heroes.delete(7, if_match='"7-4"')
        await heroes.delete(7)
        with pytest.raises(ValueError, match="no ETag"):
            await heroes.delete(7, if_match=Hero(**HERO))
    assert service.headers("If-Match") == [None, '"7-3"', '"7-4"', None]
    assert [request.method for request in service.requests] == ["GET", "PATCH", "DELETE", "DELETE"]


async def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    service = Service(reply())
    async with service.client(api_key="s3cret-key") as heroes:
        await heroes.get(7)
    async with service.client() as heroes:
        await heroes.get(7)
    assert service.headers("Authorization") == ["Bearer s3cret-key", None]


async def test_the_base_urls_path_is_kept() -> None:
    service = Service(reply())
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
        HeroesClient("http://heroes.test/api", http_client=http) as heroes,
    ):
        await heroes.get(7)
    assert str(service.requests[0].url) == "http://heroes.test/api/heroes/7"


async def test_an_answer_that_is_not_a_hero_is_unexpected() -> None:
    html = Service(lambda request: httpx.Response(200, text="<html>hello</html>"))
    async with html.client() as heroes:
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            await heroes.get(7)
    listed = Service(reply(body=[HERO]))
    async with listed.client() as heroes:
        with pytest.raises(UnexpectedResponse, match="not a hero"):
            await heroes.get(7)
    partial = Service(reply(body={"id": 7}))
    async with partial.client() as heroes:
        with pytest.raises(UnexpectedResponse, match="not a hero"):
            await heroes.get(7)
    async with partial.client() as heroes:
        with pytest.raises(UnexpectedResponse, match="not a list of heroes"):
            [hero async for hero in heroes.list()]


# --- modify -----------------------------------------------------------------------------------


class Contended:
    """A hero at version ``version`` that someone else changes before each of the client's
    first ``losses`` PATCHes."""

    def __init__(self, losses: int) -> None:
        self.version = 1
        self.losses = losses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "PATCH":
            if self.losses:
                self.losses -= 1
                self.version += 1  # the other writer's change
            if request.headers["If-Match"] != f'"7-{self.version}"':
                return httpx.Response(412, json={"detail": "Hero has changed"})
            self.version += 1
        return httpx.Response(200, json=HERO, headers={"ETag": f'"7-{self.version}"'})


async def test_modify_reads_again_after_a_412_until_the_write_lands() -> None:
    service = Contended(losses=2)
    seen: list[Hero] = []

    def birthday(hero: Hero) -> dict[str, Any]:
        seen.append(hero)
        return {"age": (hero.age or 0) + 1}

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
        HeroesClient(BASE, http_client=http) as heroes,
    ):
        hero = await heroes.modify(7, birthday)
    assert [request.method for request in service.requests] == ["GET", "PATCH"] * 3
    assert [hero.etag for hero in seen] == ['"7-1"', '"7-2"', '"7-3"']
    assert [request.headers["If-Match"] for request in service.requests[1::2]] == [
        '"7-1"',
        '"7-2"',
        '"7-3"',
    ]
    assert hero.etag == '"7-4"'


async def test_modify_gives_up_after_its_attempts() -> None:
    service = Contended(losses=10)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
        HeroesClient(BASE, http_client=http) as heroes,
    ):
        with pytest.raises(PreconditionFailed):
            await heroes.modify(7, lambda hero: {"age": 1}, attempts=3)
        with pytest.raises(ValueError, match="at least 1"):
            await heroes.modify(7, lambda hero: {"age": 1}, attempts=0)
    assert [request.method for request in service.requests] == ["GET", "PATCH"] * 3


# --- Consistency-Token ------------------------------------------------------------------------


async def test_the_newest_consistency_token_is_remembered_and_sent() -> None:
    tokens = [
        None,
        "00000000000000A0",
        "0000000000000010",  # older: ignored
        # malformed, and each would win a plain string comparison: ignored
        "ffffffffffffffff",
        "FFFFFFFFFFFFFFFFF",
        "FFFFFFFFFFFFFFF",
        "GGGGGGGGGGGGGGGG",
        "00000000000000B0",
        None,  # an answer without one changes nothing
    ]
    answers = [reply() if token is None else reply(consistency_token=token) for token in tokens]
    service = Service(*answers, reply())
    async with service.client() as heroes:
        assert heroes.consistency_token is None
        for _ in tokens:
            await heroes.get(7)
        await heroes.update(7, age=31)
        assert heroes.consistency_token == "00000000000000B0"
    assert service.headers("Consistency-Token") == [
        None,
        None,
        "00000000000000A0",
        "00000000000000A0",
        "00000000000000A0",
        "00000000000000A0",
        "00000000000000A0",
        "00000000000000A0",
        "00000000000000B0",
        "00000000000000B0",
    ]


async def test_a_token_received_on_a_retried_answer_is_sent_on_the_retry() -> None:
    service = Service(reply(503, consistency_token="0000000000000001"), reply())
    async with service.client() as heroes:
        await heroes.get(7)
    assert service.headers("Consistency-Token") == [None, "0000000000000001"]


# --- list, scripted ------------------------------------------------------------------------


async def test_list_follows_next_links_until_there_is_none() -> None:
    pages = {
        None: ([{**HERO, "id": 1}, {**HERO, "id": 2}], '</heroes/?limit=2&after_id=2>; rel="next"'),
        "2": ([{**HERO, "id": 3}, {**HERO, "id": 4}], '<?limit=2&after_id=4>; rel="prev next"'),
        "4": ([{**HERO, "id": 5}], '</heroes/?limit=2&after_id=2>; rel="prev"'),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        body, link = pages[request.url.params.get("after_id")]
        return httpx.Response(200, json=body, headers={"Link": link} if link else {})

    service = Service(answer)
    async with service.client() as heroes:
        found = [hero.id async for hero in heroes.list(min_age=18, max_age=40, limit=2)]
    assert found == [1, 2, 3, 4, 5]
    assert [str(request.url) for request in service.requests] == [
        f"{BASE}/heroes/?limit=2&min_age=18&max_age=40",
        f"{BASE}/heroes/?limit=2&after_id=2",
        f"{BASE}/heroes/?limit=2&after_id=4",
    ]


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ('<http://elsewhere.test/heroes/?after_id=2>; rel="next"', "another origin"),
        ('<https://heroes.test/heroes/?after_id=2>; rel="next"', "another origin"),
        ('</heroes/?limit=100&name=Deadpond>; rel="next"', "this page"),
    ],
)
async def test_list_refuses_a_next_link_it_must_not_follow(link: str, message: str) -> None:
    def followed(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"followed {request.url}")

    service = Service(reply(body=[HERO], link=link), followed)
    async with service.client(api_key="s3cret-key") as heroes:
        with pytest.raises(UnexpectedResponse, match=message):
            [hero async for hero in heroes.list(name="Deadpond", limit=100)]
    assert len(service.requests) == 1


# --- The HTTP client's ownership --------------------------------------------------------------


async def test_a_given_http_client_stays_open_and_an_own_one_is_closed() -> None:
    service = Service(reply())
    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as http:
        async with HeroesClient(BASE, http_client=http) as heroes:
            await heroes.get(7)
        assert not http.is_closed
    own = HeroesClient(BASE)
    async with own:
        pass
    assert own._http.is_closed


# --- Import isolation -------------------------------------------------------------------------


def test_the_client_imports_nothing_of_the_service() -> None:
    service_modules = ["fastapi", "starlette", "sqlalchemy", "sqlmodel", "alembic"]
    service_modules += ["asyncpg", "aiosqlite", "heroes_api.main", "heroes_api.config"]
    code = (
        "import sys, heroes_api.client\n"
        f"print([name for name in {service_modules!r} if name in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --- End to end, against the real app on each backend --------------------------------------------


@asynccontextmanager
async def real(
    app: FastAPI, **options: Any
) -> AsyncIterator[tuple[HeroesClient, httpx.AsyncClient]]:
    """A HeroesClient on the app (lifespan running), and the httpx client it sends through."""
    async with (
        running_client(app) as http,
        HeroesClient("http://test", http_client=http, **options) as heroes,
    ):
        yield heroes, http


async def test_list_walks_every_matching_hero_end_to_end(app: FastAPI) -> None:
    urls: list[str] = []

    async def record(request: httpx.Request) -> None:
        urls.append(str(request.url))

    async with real(app) as (heroes, http):
        http.event_hooks["request"].append(record)
        for start in range(0, 260, 20):
            await asyncio.gather(
                *(
                    heroes.create(name=f"Hero {n}", secret_name=f"Secret {n}", age=n % 130)
                    for n in range(start, start + 20)
                )
            )
        await heroes.create(name="Ageless", secret_name="Unknown")
        urls.clear()
        found = [hero async for hero in heroes.list(min_age=10)]
        assert len(found) == 240
        assert sorted(hero.name for hero in found) == sorted(
            f"Hero {n}" for n in range(260) if n % 130 >= 10
        )
        assert [hero.id for hero in found] == sorted({hero.id for hero in found})
        assert all(hero.age is not None and hero.age >= 10 for hero in found)
        assert len(urls) == 3  # 100, 100, 40
        assert all("min_age=10" in url for url in urls)
        assert all("after_id=" in url for url in urls[1:])
        small = [hero.id async for hero in heroes.list(min_age=10, max_age=19, limit=7)]
        assert small == [hero.id for hero in found if hero.age is not None and hero.age < 20]
        assert len(small) == 20
        named = [hero async for hero in heroes.list(name="Hero 42")]
        assert [(hero.name, hero.age, hero.etag) for hero in named] == [("Hero 42", 42, None)]


async def test_every_operation_end_to_end(app: FastAPI) -> None:
    async with real(app) as (heroes, http):
        created = await heroes.create(name="Deadpond", secret_name="Dive Wilson", age=30)
        assert (created.name, created.age) == ("Deadpond", 30)
        assert created.etag == f'"{created.id}-1"'
        assert await heroes.get(created.id) == created

        older = await heroes.update(created.id, if_match=created, age=31)
        assert (older.age, older.etag) == (31, f'"{created.id}-2"')
        cleared = await heroes.update(created.id, age=None)
        assert (cleared.name, cleared.age) == ("Deadpond", None)

        with pytest.raises(PreconditionFailed) as stale:
            await heroes.update(created.id, if_match=created, name="Stale")
        assert stale.value.status_code == 412
        assert stale.value.request_id
        assert (await heroes.get(created.id)).name == "Deadpond"

        with pytest.raises(ValidationFailed) as invalid:
            await heroes.create(name="Deadpond", secret_name="Dive Wilson", age=-1)
        assert invalid.value.status_code == 422
        assert isinstance(invalid.value.detail, list)
        assert invalid.value.request_id
        with pytest.raises(ValidationFailed):
            await heroes.update(created.id, name=None)  # type: ignore[arg-type]

        other = await heroes.create(name="Rusty-Man", secret_name="Tommy Sharp", age=48)
        raced = False

        async def rival(request: httpx.Request) -> None:
            """Before the first conditional PATCH leaves, another writer renames the hero."""
            nonlocal raced
            if request.method == "PATCH" and "If-Match" in request.headers and not raced:
                raced = True
                assert (await http.patch(request.url, json={"name": "Rusty-Woman"})).is_success

        def birthday(hero: Hero) -> dict[str, Any]:
            return {"age": (hero.age or 0) + 1}

        assert (await heroes.modify(other.id, birthday)).age == 49
        http.event_hooks["request"].append(rival)
        with pytest.raises(PreconditionFailed):
            await heroes.modify(other.id, birthday, attempts=1)
        raced = False
        aged = await heroes.modify(other.id, birthday, attempts=2)
        assert (aged.name, aged.age) == ("Rusty-Woman", 50)  # the rival's change is kept
        assert aged.etag == f'"{other.id}-5"'  # created, modified, renamed twice, modified

        await heroes.delete(created.id, if_match=cleared.etag)
        with pytest.raises(NotFound) as missing:
            await heroes.get(created.id)
        assert (missing.value.status_code, missing.value.detail) == (404, "Hero not found")
        assert missing.value.request_id
        with pytest.raises(NotFound):
            await heroes.delete(created.id)
        with pytest.raises(NotFound):
            await heroes.modify(created.id, birthday)


async def test_api_keys_end_to_end(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, api_keys="client-test-key-0001"))
    async with real(app) as (heroes, _):
        with pytest.raises(Unauthorized) as refused:
            await heroes.create(name="Deadpond", secret_name="Dive Wilson")
        assert refused.value.status_code == 401
        assert refused.value.request_id
    async with real(app, api_key="client-test-key-0001") as (heroes, _):
        hero = await heroes.create(name="Deadpond", secret_name="Dive Wilson")
        assert (await heroes.get(hero.id)).name == "Deadpond"
