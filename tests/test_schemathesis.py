"""Schemathesis against the service's own OpenAPI document, through a real server: no 5xx, and
every response (status code, content type, body) is what the document says.

Driven through Hypothesis directly: schemathesis' pytest plugin does not run on pytest 9.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import Phase, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.servers import Server

pytestmark = pytest.mark.slow

KEY = "schemathesis-api-key-0123456789"


@pytest.fixture(params=["open", "keyed"])
def auth(request: pytest.FixtureRequest) -> dict[str, str]:
    """Headers for every request: none (the tutorial's open API), or a valid key when the
    server has one configured (HEROES_API_KEYS; reads stay open)."""
    return {} if request.param == "open" else {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def server(database_url: str, tmp_path: Path, auth: dict[str, str]) -> Iterator[Server]:
    keys = {"HEROES_API_KEYS": KEY} if auth else {}
    with Server(database_url, tmp_path, extra_env=keys) as server:
        yield server
    assert "Traceback" not in server.log(), server.log()
    assert KEY not in server.log()


def consistent(query: dict[str, Any]) -> bool:
    """The rules between GET /heroes/'s parameters that OpenAPI cannot state (each is a 422,
    tested in test_find_heroes.py): min_age <= max_age, and after_id only without an offset."""
    ages = query.get("min_age"), query.get("max_age")
    if None not in ages and int(ages[0]) > int(ages[1]):  # type: ignore[arg-type]
        return False
    return query.get("after_id") is None or not int(query.get("offset") or 0)


def idempotency_key(headers: dict[str, str]) -> str | None:
    """The request's Idempotency-Key as the service reads it (``"abc"`` is ``abc``)."""
    key = headers.get("idempotency-key")
    if key is not None and len(key) > 1 and key[0] == key[-1] == '"':
        return key[1:-1]
    return key


def test_api_conforms_to_its_schema(server: Server, auth: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 7  # the tutorial's five, /health and /health/live
    statuses: dict[str, set[int]] = {}
    succeeded_keys: set[str] = set()  # Idempotency-Keys of writes that succeeded

    for operation in operations:
        strategy = operation.as_strategy()
        if operation.label == "GET /heroes/":
            strategy = strategy.filter(lambda case: consistent(case.query or {}))

        @given(case=strategy)
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # bounded even when something fails
            # No health check is suppressed, as none fires: the filter above rejects about one
            # GET /heroes/ case in five (filter_too_much needs far more), and generating a case
            # is fast (too_slow times generation, not the server's answer).
        )
        def check(case: schemathesis.Case[Any]) -> None:
            headers = {name.lower(): value for name, value in (case.headers or {}).items()}
            key = idempotency_key(headers)
            # Two answers in the document that the positive-data check would count as rejected
            # valid data: a generated If-Match names a version the hero is not at (412), and a
            # generated Idempotency-Key that an earlier write succeeded with, sent with another
            # request (422).
            expected_refusal = "if-match" in headers or key in succeeded_keys
            excluded = [positive_data_acceptance] if expected_refusal else []
            response = case.call_and_validate(headers=auth, timeout=10, excluded_checks=excluded)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)
            if key is not None and 200 <= response.status_code < 300:
                succeeded_keys.add(key)

        check()

    # The key went with every request: none was refused (a 401 is in the document, so it would
    # pass validation), and creates got through.
    assert all(401 not in codes for codes in statuses.values()), statuses
    assert 200 in statuses["POST /heroes/"], statuses
