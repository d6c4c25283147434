"""``Consistency-Token`` without a read replica: checked for its form on reads, never sent.

With a replica (tests/test_replicas.py) writes hand out tokens and reads honour them; without
one a token needs nothing, but a malformed one is still a 422 naming the header, so a client
learns of its mistake before a replica is configured.
"""

import httpx
import pytest
from pydantic import ValidationError

from heroes_api.config import Settings
from heroes_api.replicas import TOKEN_HEADER, parse_token, token
from tests.helpers import make_hero

MALFORMED = [
    "",
    "0",
    "000000000000000",  # 15 digits
    "00000000000000000",  # 17
    "0000000000000a1b",  # lowercase
    "00000000000000G0",
    " 0000000000000001",
    "0x00000000000001",
    "-000000000000001",
    "\uff10" * 15 + "\uff11",  # fullwidth digits, which a regex \d would take
]


async def test_a_malformed_token_is_a_422_naming_the_header(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    for path in (f"/heroes/{hero['id']}", "/heroes/", "/heroes/999999"):
        for bad in MALFORMED:
            headers = [(TOKEN_HEADER.encode(), bad.encode())]  # as is, not normalised by httpx
            response = await client.get(path, headers=headers)
            assert response.status_code == 422, (path, bad, response.text)
            (error,) = response.json()["detail"]
            assert error["loc"] == ["header", TOKEN_HEADER]
            assert "16 hexadecimal digits" in error["msg"]
            assert TOKEN_HEADER not in response.headers


async def test_a_well_formed_token_needs_nothing_without_a_replica(
    client: httpx.AsyncClient,
) -> None:
    hero = await make_hero(client)
    for good in ("0000000000000000", "00000000DEADBEEF", "FFFFFFFFFFFFFFFF"):
        headers = {TOKEN_HEADER: good}
        assert (await client.get(f"/heroes/{hero['id']}", headers=headers)).json() == hero
        assert (await client.get("/heroes/", headers=headers)).json() == [hero]
        assert (await client.get("/heroes/999999", headers=headers)).status_code == 404


async def test_no_response_carries_a_token_without_a_replica(client: httpx.AsyncClient) -> None:
    sent = {TOKEN_HEADER: "0000000000000001"}  # clients may send one on writes too: ignored
    responses = [await client.post("/heroes/", json={"name": "A", "secret_name": "s"})]
    hero_id = responses[0].json()["id"]
    url = f"/heroes/{hero_id}"
    keyed = {"Idempotency-Key": "a-key-for-this-patch-00001", **sent}
    responses += [
        await client.patch(url, json={"age": 3}, headers=keyed),
        await client.patch(url, json={"age": 3}, headers=keyed),  # replayed
        await client.patch(url, json={}, headers=sent),
        await client.get(url, headers=sent),
        await client.get("/heroes/", headers=sent),
        await client.delete(url, headers={"Idempotency-Key": "a-key-for-this-delete-0001"}),
        await client.delete(url, headers={"Idempotency-Key": "a-key-for-this-delete-0001"}),
        await client.delete(url),  # 404
    ]
    assert [r.status_code for r in responses] == [200] * 8 + [404]
    assert responses[2].headers.get("Idempotent-Replayed") == "true"
    assert [r.headers.get(TOKEN_HEADER) for r in responses] == [None] * len(responses)


async def test_openapi_documents_the_header_on_reads(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/heroes/", "/heroes/{hero_id}"):
        parameters = paths[path]["get"]["parameters"]
        (header,) = [p for p in parameters if p["name"] == TOKEN_HEADER]
        assert header["in"] == "header"
        assert header["schema"]["pattern"] == "^[0-9A-F]{16}$"


def test_tokens_are_16_uppercase_hex_digits_that_sort_as_positions() -> None:
    positions = [0, 1, 0xF, 0x10, 0x3441D18, 2**63, 2**64 - 1]
    tokens = [token(position) for position in positions]
    assert tokens[:2] == ["0000000000000000", "0000000000000001"]
    assert tokens[-1] == "FFFFFFFFFFFFFFFF"
    assert sorted(tokens) == tokens
    assert [parse_token(t) for t in tokens] == positions
    for bad in MALFORMED:
        with pytest.raises(ValueError, match="16 hexadecimal digits"):
            parse_token(bad)


@pytest.mark.parametrize(
    ("database_url", "read_url", "message"),
    [
        ("sqlite:///heroes.db", "postgresql://h/db", "needs a PostgreSQL HEROES_DATABASE_URL"),
        ("postgresql://h/db", "sqlite:///r.db", "must be a PostgreSQL URL"),
    ],
)
def test_a_read_database_needs_postgresql(database_url: str, read_url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(database_url=database_url, read_database_url=read_url)


def test_a_read_database_url_is_mapped_to_asyncpg() -> None:
    settings = Settings(database_url="postgres://h/db", read_database_url="postgres://r/db")
    assert settings.read_database_url == "postgresql+asyncpg://r/db"
    assert Settings(database_url="postgres://h/db", read_database_url="").read_database_url is None
