"""Hypothesis drives the API with random create/get/list/patch/delete sequences, conditional
ones (If-None-Match, If-Match with current, stale and ``*`` tags) among them, and compares every
answer and every ETag with an in-memory model of what the service should hold."""

import json
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from hypothesis.stateful import (
    precondition as only_if,
)

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.models import INT32_MAX, INT32_MIN, TEXT_MAX_LENGTH
from tests.databases import Databases
from tests.helpers import running_client

pytestmark = pytest.mark.slow

SECRET_MARK = "Hq-Stateful-Secret"
text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=TEXT_MAX_LENGTH
)
ages = st.none() | st.integers(0, INT32_MAX)
secrets = text.map(lambda s: (SECRET_MARK + s)[:TEXT_MAX_LENGTH])
creates = st.fixed_dictionaries({"name": text, "secret_name": secrets}, optional={"age": ages})
updates = st.fixed_dictionaries({}, optional={"name": text, "secret_name": secrets, "age": ages})
not_text = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers())
bad_text = not_text | st.text(min_size=TEXT_MAX_LENGTH + 1) | text.map(lambda s: s + "\x00")
bad_age = (
    st.integers().filter(lambda n: not 0 <= n <= INT32_MAX)
    | st.floats().filter(lambda f: not f.is_integer())
    | st.booleans()
    | st.lists(st.integers())
    | st.dictionaries(text, st.integers(), max_size=2)
)
BAD_FIELD = {"name": bad_text, "secret_name": bad_text, "age": bad_age}
# A valid body with one field made wrong, or something that is not a hero at all.
junk = st.one_of(
    st.tuples(creates, st.sampled_from(sorted(BAD_FIELD))).flatmap(
        lambda pair: BAD_FIELD[pair[1]].map(lambda value: {**pair[0], pair[1]: value})
    ),
    not_text,
    st.lists(creates, max_size=2),
)


JSON = {"content-type": "application/json"}
# A few Idempotency-Keys, so that they repeat; the quoted form is the same key.
idempotency_keys = st.sampled_from(["key-a", '"key-a"', "key-b", "key-c"])
REUSED = {"detail": "Idempotency-Key was already used for a different request"}
KINDS = ["current", "stale", "future", "star", "weak"]


def as_json(value: Any) -> bytes:
    """Python's JSON, NaN and Infinity included (httpx's ``json=`` refuses them)."""
    return json.dumps(value).encode()


class SyncClient:
    """The async test client, called from Hypothesis' synchronous rules through a portal."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal, self.client = portal, client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.portal.call(
            lambda: self.client.request(method, url, **kwargs)
        )
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


class HeroesMachine(RuleBasedStateMachine):
    """One run of the machine is one Hypothesis example, with a database of its own (a copy of
    the migrated template) and an app on it: every example starts empty, so a replay (shrinking
    it, or reporting it) sees exactly what its first run saw."""

    portal: BlockingPortal  # set by the test, on a subclass of its own
    databases: Databases
    heroes = Bundle("heroes")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[int, dict[str, Any]] = {}
        self.versions: dict[int, int] = {}
        # Each Idempotency-Key's request and the answer stored for it: (request, body, ETag).
        self.answers: dict[str, tuple[Any, bytes, str | None]] = {}
        # The last keyed write, to send again as a client's retry would: (key, request, args).
        self.last_keyed: tuple[str, Any, dict[str, Any]] | None = None
        self.resources = ExitStack()
        try:
            url = self.databases.create()
            self.resources.callback(self.databases.drop, url)
            app = create_app(Settings(database_url=url))
            served = self.portal.wrap_async_context_manager(running_client(app))
            self.client = SyncClient(self.portal, self.resources.enter_context(served))
        except BaseException:
            self.resources.close()
            raise

    def teardown(self) -> None:
        """The app's lifespan ends (engines disposed), then its database is dropped."""
        self.resources.close()

    def etag(self, hero_id: int, version: int | None = None) -> str:
        return f'"{hero_id}-{self.versions.get(hero_id, 1) if version is None else version}"'

    def precondition(self, hero_id: int, kind: str) -> tuple[dict[str, str], bool]:
        """An If-Match header of ``kind`` and whether it holds for the hero as modelled."""
        current = self.versions.get(hero_id, 1)
        header = {
            "current": self.etag(hero_id),
            "stale": self.etag(hero_id, current - 1),
            "future": self.etag(hero_id, current + 1),
            "star": "*",
            "weak": f"W/{self.etag(hero_id)}",
        }[kind]
        return {"If-Match": header}, kind in ("current", "star")

    def everything(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for offset in range(0, 10_000, 100):
            page = self.client.get("/heroes/", params={"offset": offset}).json()
            found += page
            if len(page) < 100:
                break
        return found

    @rule(target=heroes, body=creates)
    def create(self, body: dict[str, Any]) -> int:
        return self.created(body, self.client.post("/heroes/", json=body))

    def created(self, body: dict[str, Any], response: httpx.Response) -> int:
        assert response.status_code == 200, response.text
        hero = response.json()
        assert hero == {"id": hero["id"], "name": body["name"], "age": body.get("age")}
        assert hero["id"] not in self.model
        assert response.headers["etag"] == f'"{hero["id"]}-1"'
        self.model[hero["id"]] = hero
        self.versions[hero["id"]] = 1
        return int(hero["id"])

    @rule(body=junk)
    def create_rejected(self, body: Any) -> None:
        response = self.client.post("/heroes/", content=as_json(body), headers=JSON)
        assert response.status_code == 422, response.text
        assert SECRET_MARK not in response.text

    @rule(hero_id=heroes | st.integers(INT32_MIN, INT32_MAX))
    def get(self, hero_id: int) -> None:
        response = self.client.get(f"/heroes/{hero_id}")
        if hero_id in self.model:
            assert response.json() == self.model[hero_id]
            assert response.headers["etag"] == self.etag(hero_id)
        else:
            assert response.status_code == 404

    @rule(hero_id=heroes, stale=st.booleans())
    def get_if_none_match(self, hero_id: int, stale: bool) -> None:
        version = self.versions.get(hero_id, 1) - stale
        response = self.client.get(
            f"/heroes/{hero_id}", headers={"If-None-Match": self.etag(hero_id, version)}
        )
        if hero_id not in self.model:
            assert response.status_code == 404
        elif stale:
            assert (response.status_code, response.json()) == (200, self.model[hero_id])
        else:
            assert (response.status_code, response.content) == (304, b"")

    @rule(offset=st.integers(0, 50), limit=st.integers(1, 100))
    def page(self, offset: int, limit: int) -> None:
        response = self.client.get("/heroes/", params={"offset": offset, "limit": limit})
        expected = [self.model[i] for i in sorted(self.model)][offset : offset + limit]
        assert response.json() == expected

    @rule(data=st.data(), limit=st.integers(1, 100))
    def find(self, data: st.DataObject, limit: int) -> None:
        """Filters and keyset paging, against the model; the Link header when a page is full."""
        known_names = sorted({hero["name"] for hero in self.model.values()}) or [""]
        known_ages = sorted({h["age"] for h in self.model.values() if h["age"] is not None}) or [0]
        known_ids = sorted(self.model) or [0]
        params: dict[str, Any] = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(known_names) | text,
                    "min_age": st.sampled_from(known_ages) | st.integers(0, INT32_MAX),
                    "max_age": st.sampled_from(known_ages) | st.integers(0, INT32_MAX),
                    "after_id": st.sampled_from(known_ids) | st.integers(INT32_MIN, INT32_MAX),
                    "offset": st.integers(0, 5),
                },
            )
        )
        response = self.client.get("/heroes/", params={**params, "limit": limit})
        low: int = params.get("min_age", 0)
        high: int = params.get("max_age", INT32_MAX)
        if low > high or ("after_id" in params and params.get("offset")):
            assert response.status_code == 422, response.text
            return
        matching = [
            self.model[i]
            for i in sorted(self.model)
            if params.get("name", self.model[i]["name"]) == self.model[i]["name"]
            and (
                ("min_age" not in params and "max_age" not in params)
                or (self.model[i]["age"] is not None and low <= self.model[i]["age"] <= high)
            )
            and i > params.get("after_id", INT32_MIN - 1)
        ]
        offset: int = params.get("offset", 0)
        expected = matching[offset : offset + limit]
        assert response.json() == expected
        if len(expected) == limit:
            assert f"after_id={expected[-1]['id']}" in response.headers["link"]
        else:
            assert "link" not in response.headers

    @rule(hero_id=heroes, change=updates)
    def patch(self, hero_id: int, change: dict[str, Any]) -> None:
        self.patched(hero_id, change, self.client.patch(f"/heroes/{hero_id}", json=change))

    def patched(self, hero_id: int, change: dict[str, Any], response: httpx.Response) -> None:
        if hero_id not in self.model:
            assert response.status_code == 404
            return
        public = {k: v for k, v in change.items() if k != "secret_name"}
        self.model[hero_id] = {**self.model[hero_id], **public}
        self.versions[hero_id] += bool(change)  # an empty PATCH changes nothing
        assert response.json() == self.model[hero_id]
        assert response.headers["etag"] == self.etag(hero_id)
        assert SECRET_MARK not in response.text

    @rule(hero_id=heroes, change=updates, kind=st.sampled_from(KINDS))
    def patch_if_match(self, hero_id: int, change: dict[str, Any], kind: str) -> None:
        headers, holds = self.precondition(hero_id, kind)
        response = self.client.patch(f"/heroes/{hero_id}", json=change, headers=headers)
        if hero_id not in self.model:
            assert response.status_code == 404
        elif not holds:
            assert response.status_code == 412, response.text
        else:
            public = {k: v for k, v in change.items() if k != "secret_name"}
            self.model[hero_id] = {**self.model[hero_id], **public}
            self.versions[hero_id] += bool(change)
            assert response.json() == self.model[hero_id]
            assert response.headers["etag"] == self.etag(hero_id)

    @rule(hero_id=heroes, kind=st.sampled_from(KINDS))
    def delete_if_match(self, hero_id: int, kind: str) -> None:
        headers, holds = self.precondition(hero_id, kind)
        response = self.client.delete(f"/heroes/{hero_id}", headers=headers)
        if hero_id not in self.model:
            assert response.status_code == 404
        elif not holds:
            assert response.status_code == 412, response.text
        else:
            assert response.json() == {"ok": True}
            del self.model[hero_id], self.versions[hero_id]

    @rule(hero_id=heroes, change=junk)
    def patch_rejected(self, hero_id: int, change: Any) -> None:
        response = self.client.patch(f"/heroes/{hero_id}", content=as_json(change), headers=JSON)
        assert response.status_code == 422, response.text

    @rule(hero_id=heroes)
    def delete(self, hero_id: int) -> None:
        self.deleted(hero_id, self.client.delete(f"/heroes/{hero_id}"))

    def deleted(self, hero_id: int, response: httpx.Response) -> None:
        if self.model.pop(hero_id, None) is None:
            assert response.status_code == 404
        else:
            assert response.json() == {"ok": True}
            del self.versions[hero_id]

    def keyed(self, key: str, request: Any, response: httpx.Response) -> bool:
        """Checks a keyed write's answer against what the key holds; True when the write ran as
        an unkeyed one would (its answer is then checked by the caller, and stored here if the
        write succeeded: ``store``)."""
        stored = self.answers.get(key.strip('"'))
        if stored is None:
            assert "idempotent-replayed" not in response.headers
            return True
        first_request, body, etag = stored
        if first_request != request:
            assert (response.status_code, response.json()) == (422, REUSED)
        else:  # the first answer, byte for byte, even if the hero has changed or gone since
            assert (response.status_code, response.content) == (200, body)
            assert response.headers.get("etag") == etag
            assert response.headers["idempotent-replayed"] == "true"
        return False

    def send_keyed(self, key: str, request: Any, **args: Any) -> httpx.Response:
        self.last_keyed = (key, request, args)
        return self.client.request(**args, headers={"Idempotency-Key": key})

    @only_if(lambda self: self.last_keyed is not None)
    @rule()
    def retry_last_keyed(self) -> None:
        """The last keyed write again, as a client retries one whose answer it lost: once it
        succeeded, the first answer comes back and nothing changes (else it runs again)."""
        assert self.last_keyed is not None
        key, request, args = self.last_keyed
        response = self.client.request(**args, headers={"Idempotency-Key": key})
        if not self.keyed(key, request, response):
            return
        method = request[0]
        if method == "POST":
            self.created(args["json"], response)
        elif method == "PATCH":
            self.patched(request[1], args["json"], response)
        else:
            self.deleted(request[1], response)
        if method != "PATCH" or args["json"]:
            self.store(key, request, response)

    def store(self, key: str, request: Any, response: httpx.Response) -> None:
        if response.status_code == 200:  # only successes are kept
            self.answers[key.strip('"')] = (request, response.content, response.headers.get("etag"))

    @rule(target=heroes, key=idempotency_keys, body=creates)
    def keyed_create(self, key: str, body: dict[str, Any]) -> MultipleResults[int]:
        request = ("POST", body["name"], body.get("age"), body["secret_name"])
        response = self.send_keyed(key, request, method="POST", url="/heroes/", json=body)
        if not self.keyed(key, request, response):
            return multiple()
        hero_id = self.created(body, response)
        self.store(key, request, response)
        return multiple(hero_id)

    @rule(key=idempotency_keys, hero_id=heroes, change=updates)
    def keyed_patch(self, key: str, hero_id: int, change: dict[str, Any]) -> None:
        request = ("PATCH", hero_id, frozenset(change.items()))
        url = f"/heroes/{hero_id}"
        response = self.send_keyed(key, request, method="PATCH", url=url, json=change)
        if self.keyed(key, request, response):
            self.patched(hero_id, change, response)
            if change:  # a PATCH that changes nothing writes (and keeps) nothing
                self.store(key, request, response)

    @rule(key=idempotency_keys, hero_id=heroes)
    def keyed_delete(self, key: str, hero_id: int) -> None:
        request = ("DELETE", hero_id)
        response = self.send_keyed(key, request, method="DELETE", url=f"/heroes/{hero_id}")
        if self.keyed(key, request, response):
            self.deleted(hero_id, response)
            self.store(key, request, response)

    @invariant()
    def holds_exactly_the_model(self) -> None:
        assert self.everything() == [self.model[i] for i in sorted(self.model)]


def test_api_matches_model(databases: Databases) -> None:
    with start_blocking_portal() as portal:
        machine = type("Machine", (HeroesMachine,), {"portal": portal, "databases": databases})
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=15,
                stateful_step_count=20,
                deadline=None,
                database=None,
                # Default phases: a failure is shrunk to the shortest sequence that still fails.
            ),
        )
