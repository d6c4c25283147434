"""Whatever a client sends: a 4xx with a ``detail``, nothing changed, no secret leaked."""

import json
from typing import Any

import httpx
import pytest

from heroes_api.models import INT32_MAX
from tests.helpers import make_hero

SECRET = "Zq-Hostile-Secret-7731"
JSON = {"content-type": "application/json"}
SECRET_JSON = json.dumps({"name": "Deadpond", "secret_name": SECRET}).encode()


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (method, path relative to an existing hero's URL or absolute, httpx request kwargs)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/heroes/", {"content": b"[]", "headers": JSON}),
    ("POST", "/heroes/", {"content": b"null", "headers": JSON}),
    ("POST", "/heroes/", {"content": b'"a string"', "headers": JSON}),
    ("POST", "/heroes/", {"content": b"42", "headers": JSON}),
    ("POST", "/heroes/", {"content": b"", "headers": JSON}),
    ("POST", "/heroes/", {"content": b"not json " + SECRET.encode(), "headers": JSON}),
    ("POST", "/heroes/", {"content": SECRET_JSON[:-1], "headers": JSON}),  # truncated
    ("POST", "/heroes/", {"content": b'{"name": "\xff\xfe", "secret_name": "s"}', "headers": JSON}),
    ("POST", "/heroes/", {"content": SECRET_JSON, "headers": {"content-type": "text/plain"}}),
    ("POST", "/heroes/", {"content": SECRET_JSON}),  # no content type at all
    (
        "POST",
        "/heroes/",
        {
            "content": b"name=a&secret_name=" + SECRET.encode(),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "POST",
        "/heroes/",
        {"content": SECRET_JSON, "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ),
    ("POST", "/heroes/", {"content": deep(100_000), "headers": JSON}),
    (
        "POST",
        "/heroes/",
        {"content": b'{"name": ' * 50_000 + b"1" + b"}" * 50_000, "headers": JSON},
    ),
    (
        "POST",
        "/heroes/",
        {"content": b'{"name":"a","secret_name":"s","age":' + b"9" * 5000 + b"}", "headers": JSON},
    ),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": 2**64}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": -(2**64)}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": INT32_MAX + 1}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": 1.5}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": True}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET, "age": "thirty"}}),
    (
        "POST",
        "/heroes/",
        {"content": b'{"name":"a","secret_name":"s","age":1e999}', "headers": JSON},
    ),
    ("POST", "/heroes/", {"content": b'{"name":"a","secret_name":"s","age":NaN}', "headers": JSON}),
    ("POST", "/heroes/", {"json": {"name": None, "secret_name": SECRET}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": None}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": {"nested": SECRET}}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": [SECRET]}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET + "\x00"}}),
    ("POST", "/heroes/", {"json": {"name": "a", "secret_name": SECRET * 20}}),
    (
        "POST",
        "/heroes/",
        {
            "content": b'{"name":"a","secret_name":"' + SECRET.encode() + b'\\udc00"}',
            "headers": JSON,
        },
    ),
    ("POST", "/heroes/", {"json": {"name": "\u202e\ufeff" * 200, "secret_name": SECRET}}),
    ("PATCH", "", {"content": b"[]", "headers": JSON}),
    ("PATCH", "", {"content": b"null", "headers": JSON}),
    ("PATCH", "", {"content": b"{", "headers": JSON}),
    ("PATCH", "", {"json": {"secret_name": None}}),
    ("PATCH", "", {"json": {"name": None}}),
    ("PATCH", "", {"json": {"age": -1}}),
    ("PATCH", "", {"json": {"age": True}}),
    ("PATCH", "", {"json": {"age": 2**100}}),
    ("PATCH", "", {"json": {"secret_name": SECRET + "\x00"}}),
    ("PATCH", "", {"json": {"secret_name": SECRET * 20}}),
    ("PATCH", "", {"json": {"secret_name": 7, "age": 3}}),
    ("PATCH", "", {"content": json.dumps({"secret_name": SECRET}).encode()}),  # no content type
    ("PUT", "", {"json": {"name": "a", "secret_name": SECRET}}),
    ("POST", "", {"json": {"name": "a", "secret_name": SECRET}}),
    ("FOO", "", {}),
    ("TRACE", "/heroes/", {}),
    ("DELETE", "/heroes/", {}),
    ("GET", "/heroes/1%00", {}),
    ("GET", "/heroes/%F0%9F%A6%B8", {}),
    ("GET", "/heroes/1e3", {}),
    ("GET", "/heroes/" + "9" * 5000, {}),
    ("DELETE", "/heroes/-99999999999", {}),
    ("GET", "/heroes/?limit=%00", {}),
    ("GET", "/heroes/?limit=1e2", {}),
    ("GET", "/heroes/?offset=" + "9" * 100, {}),
    ("GET", "/heroes/?offset=-0.5", {}),
    ("GET", "/no/such/route", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES)
async def test_hostile_request_is_a_clean_4xx(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    hero = await make_hero(client, secret_name=SECRET)
    url = path if path.startswith("/") else f"/heroes/{hero['id']}{path}"
    response = await client.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert SECRET not in response.text
    for error in response.json()["detail"] if isinstance(response.json()["detail"], list) else []:
        assert set(error) == {"type", "loc", "msg"}
    # Nothing was stored or changed.
    assert (await client.get("/heroes/")).json() == [hero]


async def test_valid_json_in_other_encodings_is_accepted(client: httpx.AsyncClient) -> None:
    """JSON may be UTF-16/32 (RFC 8259 readers detect it): not hostile, just unusual."""
    body = json.dumps({"name": "Ünïcode", "secret_name": SECRET}).encode("utf-16")
    response = await client.post("/heroes/", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json()["name"] == "Ünïcode"
    assert SECRET not in response.text
