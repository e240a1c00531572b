"""`doxa serve` through its ASGI app: every endpoint, auth, tenant isolation, limits.

The model provider behind the server is the fake on loopback, which answers each batch
with one record per event that says something ("Said: ..."), so ingests are real.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from doxa.engine import Engine
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.server.app import create_app
from doxa.server.auth import KeyRing
from doxa.server.settings import ServerLimits
from doxa.testing.fake_provider import FakeProvider

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ACME = "acme-key-0123456789abcdef"
ACME_READ = "acme-readonly-0123456789"
GLOBEX = "globex-key-0123456789abcdef"
PROBLEM = "application/problem+json"


def events(*texts: str, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": f"e{start + i}", "type": "chat_message",
             "timestamp": (T0 + timedelta(minutes=i)).isoformat(), "text": text}
            for i, text in enumerate(texts)]


SAYS = events("We need SSO before the security review",
              "Please keep replies short and in bullets",
              "I think the reporting module is too expensive for us")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyring() -> KeyRing:
    ring = KeyRing()
    ring.add_key("acme", ACME)
    ring.add_key("acme", ACME_READ, ["read"])
    ring.add_key("globex", GLOBEX)
    return ring


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    yield provider
    await provider.stop()


def make_engine(fake: FakeProvider) -> Engine:
    return Engine(model="openai/fake", store="memory://", base_url=fake.base_url, api_key="x",
                  retry=RetryPolicy(attempts=1), settings=ExtractionSettings(reasks=0))


@pytest.fixture
async def engine(fake: FakeProvider) -> AsyncIterator[Engine]:
    made = make_engine(fake)
    yield made
    await made.close()


def client_for(engine: Engine, limits: ServerLimits | None = None) -> httpx.AsyncClient:
    app = create_app(engine, keyring(), limits)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://doxa")


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(engine) as c:
        yield c


async def ingest(client: httpx.AsyncClient, user: str, evs: list[dict[str, Any]],
                 key: str = ACME) -> httpx.Response:
    return await client.post(f"/v1/users/{user}/events", json={"events": evs}, headers=auth(key))


# -- happy paths ---------------------------------------------------------------------------


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/health")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


async def test_ingest_answers_what_changed_in_the_callers_own_ids(
    client: httpx.AsyncClient, engine: Engine,
) -> None:
    answer = await ingest(client, "u-42", SAYS)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["user_id"] == "u-42" and result["events_new"] == 3
    assert len(result["changes"]) == 3 and result["llm_calls"] == 1
    # Stored under the tenant's namespace; the API never shows it.
    assert await engine.users() == ["acme/u-42"]
    again = await ingest(client, "u-42", SAYS)
    assert again.json()["events_new"] == 0 and again.json()["changes"] == []


async def test_model_and_kind_queries_read_back_what_was_ingested(
    client: httpx.AsyncClient,
) -> None:
    await ingest(client, "u-42", SAYS)
    model = (await client.get("/v1/users/u-42/model", headers=auth(ACME_READ))).json()
    assert model["user_id"] == "u-42" and model["version"] == 1 and len(model["records"]) == 3
    assert {r["user_id"] for r in model["records"]} == {"u-42"}
    assert model["next_cursor"] is None and isinstance(model["is_cold"], bool)
    goals = (await client.get("/v1/users/u-42/goals", headers=auth(ACME_READ))).json()
    assert [g["statement"] for g in goals["records"]] == [
        "Said: We need SSO before the security review"]
    prefs = (await client.get("/v1/users/u-42/preferences", headers=auth(ACME))).json()
    assert [p["kind"] for p in prefs["records"]] == ["preference"]
    beliefs = await client.get("/v1/users/u-42/beliefs", headers=auth(ACME),
                               params={"context": "general", "min_confidence": 0.5})
    assert [b["kind"] for b in beliefs.json()["records"]] == ["belief"]
    none = await client.get("/v1/users/u-42/beliefs", headers=auth(ACME),
                            params={"min_confidence": 0.99})
    assert none.json()["records"] == []


async def test_confidence_can_be_read_faded_to_a_moment(client: httpx.AsyncClient) -> None:
    await ingest(client, "u-42", SAYS)
    now = (await client.get("/v1/users/u-42/goals", headers=auth(ACME))).json()
    later = (await client.get("/v1/users/u-42/goals", headers=auth(ACME),
                              params={"at": "2027-03-02T10:00:00Z"})).json()
    assert later["records"][0]["confidence"] < now["records"][0]["confidence"]


async def test_explain_shows_the_evidence_with_its_event(client: httpx.AsyncClient) -> None:
    await ingest(client, "u-42", SAYS)
    goals = (await client.get("/v1/users/u-42/goals", headers=auth(ACME))).json()
    record_id = goals["records"][0]["id"]
    answer = await client.get(f"/v1/users/u-42/records/{record_id}/explain", headers=auth(ACME))
    assert answer.status_code == 200
    explanation = answer.json()
    assert explanation["record"]["id"] == record_id
    [item] = explanation["evidence"]
    assert item["event"]["id"] == "e1" and item["event"]["user_id"] == "u-42"
    missing = await client.get("/v1/users/u-42/records/r_000000000000/explain",
                               headers=auth(ACME))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert "acme/" not in missing.text


async def test_an_outcome_moves_the_record_once(client: httpx.AsyncClient) -> None:
    await ingest(client, "u-42", SAYS)
    goals = (await client.get("/v1/users/u-42/goals", headers=auth(ACME))).json()
    record = goals["records"][0]
    body = {"record_id": record["id"], "outcome": "ignored", "event_id": "delivery-1"}
    answer = await client.post("/v1/users/u-42/outcomes", json=body, headers=auth(ACME))
    assert answer.status_code == 200, answer.text
    [change] = answer.json()["changes"]
    assert change["confidence_after"] < record["confidence"] == change["confidence_before"]
    twice = await client.post("/v1/users/u-42/outcomes", json=body, headers=auth(ACME))
    assert twice.status_code == 200 and twice.json()["changes"] == []
    unknown = await client.post("/v1/users/u-42/outcomes", headers=auth(ACME),
                                json={"record_id": "r_000000000000", "outcome": "engaged"})
    assert unknown.status_code == 404


async def test_delete_erases_the_user(client: httpx.AsyncClient, engine: Engine) -> None:
    await ingest(client, "u-42", SAYS)
    answer = await client.delete("/v1/users/u-42", headers=auth(ACME))
    assert answer.status_code == 204 and answer.content == b""
    assert await engine.users() == []
    gone = await client.get("/v1/users/u-42/model", headers=auth(ACME))
    assert gone.status_code == 404
    # Idempotent: erasing nothing is not an error, and says nothing about existence.
    assert (await client.delete("/v1/users/u-42", headers=auth(ACME))).status_code == 204


async def test_large_models_are_paged_with_a_cursor(client: httpx.AsyncClient) -> None:
    texts = ["I think dashboards load too slowly on mobile",
             "Our auditors distrust spreadsheet exports entirely",
             "Honestly the onboarding checklist felt confusing",
             "Competitor pricing seems cheaper for small teams",
             "Integrations with Salesforce matter most here",
             "Weekly digest emails usually get ignored by managers"]
    await ingest(client, "big", events(*texts))  # six: what one answer may propose
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/users/big/beliefs", headers=auth(ACME),
                                 params=params)).json()
        seen += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 == len(set(seen))
    model = (await client.get("/v1/users/big/model", headers=auth(ACME),
                              params={"limit": 5})).json()
    assert len(model["records"]) == 5 and model["next_cursor"]
    rest = (await client.get("/v1/users/big/model", headers=auth(ACME),
                             params={"limit": 5, "cursor": model["next_cursor"]})).json()
    assert len(rest["records"]) == 1 and rest["next_cursor"] is None
    wrong = await client.get("/v1/users/big/goals", headers=auth(ACME),
                             params={"cursor": model["next_cursor"]})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "cursor"


# -- authentication ------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/users/u-42/events", {"events": SAYS}),
    ("GET", "/v1/users/u-42/model", None),
    ("GET", "/v1/users/u-42/beliefs", None),
    ("GET", "/v1/users/u-42/goals", None),
    ("GET", "/v1/users/u-42/preferences", None),
    ("GET", "/v1/users/u-42/records/r_000000000000/explain", None),
    ("POST", "/v1/users/u-42/outcomes", {"record_id": "r_000000000000", "outcome": "engaged"}),
    ("DELETE", "/v1/users/u-42", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("headers", [
    {}, auth("not-a-key"), {"Authorization": ACME}, {"Authorization": f"Basic {ACME}"},
    {"X-API-Key": ACME},
], ids=["no-key", "wrong-key", "no-scheme", "basic", "other-header"])
async def test_every_endpoint_refuses_a_missing_or_wrong_key(
    client: httpx.AsyncClient, engine: Engine, fake: FakeProvider, method: str, path: str,
    body: dict[str, Any] | None, headers: dict[str, str],
) -> None:
    answer = await client.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["type"] == "urn:doxa:problem:unauthorized"
    assert await engine.users() == [] and fake.stats.requests == 0


@pytest.mark.parametrize(("method", "path", "body"),
                         [e for e in ENDPOINTS if e[0] != "GET"])
async def test_a_read_only_key_cannot_write_or_delete(
    client: httpx.AsyncClient, engine: Engine, method: str, path: str,
    body: dict[str, Any] | None,
) -> None:
    answer = await client.request(method, path, json=body, headers=auth(ACME_READ))
    assert answer.status_code == 403 and answer.headers["content-type"] == PROBLEM
    assert "scope" in answer.json()["detail"]
    assert await engine.users() == []


# -- tenant isolation ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS[1:])
async def test_another_tenants_user_looks_exactly_like_no_user(
    client: httpx.AsyncClient, engine: Engine, method: str, path: str,
    body: dict[str, Any] | None,
) -> None:
    await ingest(client, "u-42", SAYS)
    record_id = (await client.get("/v1/users/u-42/model", headers=auth(ACME))
                 ).json()["records"][0]["id"]
    path = path.replace("r_000000000000", record_id)
    body = {**body, "record_id": record_id} if body else None
    theirs = await client.request(method, path, json=body, headers=auth(GLOBEX))
    never = await client.request(method, path.replace("u-42", "u-never"), json=body,
                                 headers=auth(GLOBEX))
    # The same status and the same problem, but for the user id the caller itself sent.
    assert theirs.status_code == never.status_code
    assert theirs.status_code in (404, 204)
    assert theirs.text.replace("u-42", "X") == never.text.replace("u-never", "X")
    # acme's user is untouched: still there with its three records, unchanged.
    mine = (await client.get("/v1/users/u-42/model", headers=auth(ACME))).json()
    assert mine["version"] == 1 and len(mine["records"]) == 3
    assert await engine.users() == ["acme/u-42"]


async def test_the_same_user_id_in_two_tenants_is_two_users(
    client: httpx.AsyncClient, engine: Engine,
) -> None:
    await ingest(client, "u-42", SAYS[:1])
    await ingest(client, "u-42", SAYS[1:2], key=GLOBEX)
    acme = (await client.get("/v1/users/u-42/model", headers=auth(ACME))).json()
    globex = (await client.get("/v1/users/u-42/model", headers=auth(GLOBEX))).json()
    assert [r["kind"] for r in acme["records"]] == ["goal"]
    assert [r["kind"] for r in globex["records"]] == ["preference"]
    assert await engine.users() == ["acme/u-42", "globex/u-42"]


@pytest.mark.parametrize("user", ["acme%2Fu-42", "..", "a b", "-x", "x" * 129, "%2e%2e"])
async def test_user_ids_that_could_leave_the_namespace_are_refused(
    client: httpx.AsyncClient, engine: Engine, user: str,
) -> None:
    await ingest(client, "u-42", SAYS)
    answer = await client.get(f"/v1/users/{user}/model", headers=auth(GLOBEX))
    assert answer.status_code in (404, 422)
    assert "Said" not in answer.text


# -- limits and validation -----------------------------------------------------------------


async def test_a_declared_oversized_body_is_refused_before_it_is_read(
    engine: Engine, fake: FakeProvider,
) -> None:
    async with client_for(engine, ServerLimits(max_body_bytes=2048)) as client:
        big = events(*["I think this is a long message " * 10] * 20)
        answer = await ingest(client, "u-42", big)
    assert answer.status_code == 413 and answer.headers["content-type"] == PROBLEM
    assert "2048 bytes" in answer.json()["detail"]
    assert await engine.users() == [] and fake.stats.requests == 0


async def test_a_streamed_oversized_body_is_cut_off(engine: Engine) -> None:
    chunks_sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):
            chunks_sent += 1
            yield b"x" * 1024

    async with client_for(engine, ServerLimits(max_body_bytes=4096)) as client:
        answer = await client.post("/v1/users/u-42/events", content=stream(),
                                   headers=auth(ACME) | {"content-type": "application/json"})
    assert answer.status_code == 413
    assert await engine.users() == []


async def test_too_many_events_names_the_field(engine: Engine) -> None:
    async with client_for(engine, ServerLimits(max_events=2)) as client:
        answer = await ingest(client, "u-42", SAYS)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "events"
    assert await engine.users() == []


@pytest.mark.parametrize(("body", "field"), [
    ({"events": [{**SAYS[0], "timestamp": "2026-03-02T10:00:00"}]}, "events[0].timestamp"),
    ({"events": [SAYS[0], {**SAYS[1], "id": " e2"}]}, "events[1].id"),
    ({"events": [{k: v for k, v in SAYS[0].items() if k != "type"}]}, "events[0].type"),
    ({"events": []}, "events"),
    ({"evnts": SAYS}, "events"),
    ({"events": [{**SAYS[0], "user_id": "someone-else"}]}, "events[0].user_id"),
    ({"events": [SAYS[0], {**SAYS[0], "text": "changed"}]}, "events[1].id"),
    ({"events": [{**SAYS[0], "text": "x" * 20_001}]}, "events[0].text"),
])
async def test_invalid_events_are_refused_whole_naming_the_field(
    client: httpx.AsyncClient, engine: Engine, fake: FakeProvider, body: dict[str, Any],
    field: str,
) -> None:
    answer = await client.post("/v1/users/u-42/events", json=body, headers=auth(ACME))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == PROBLEM and problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "acme/" not in answer.text
    assert await engine.users() == [] and fake.stats.requests == 0


@pytest.mark.parametrize(("content", "content_type", "status", "kind"), [
    (b'{"events": [', "application/json", 400, "malformed-body"),
    (b"\xff\xfe", "application/json", 400, "malformed-body"),
    (b'{"events": [{"id": "e1", "type": "chat_message", "text": "caf\xe9"}]}',
     "application/json", 400, "malformed-body"),  # Latin-1, not UTF-8
    (b"events=1", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
    (b"[1, 2]", "application/json", 422, "invalid-request"),
])
async def test_malformed_bodies_get_a_clear_error_and_nothing_is_written(
    client: httpx.AsyncClient, engine: Engine, content: bytes, content_type: str, status: int,
    kind: str,
) -> None:
    answer = await client.post("/v1/users/u-42/events", content=content,
                               headers=auth(ACME) | {"content-type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM and answer.json()["detail"]
    assert answer.json()["type"] == f"urn:doxa:problem:{kind}"
    assert await engine.users() == []


@pytest.mark.parametrize("keys", [(ACME, GLOBEX), ("not-a-key", ACME), (ACME, ACME)])
async def test_two_authorization_headers_are_refused_whichever_keys_they_hold(
    client: httpx.AsyncClient, engine: Engine, keys: tuple[str, str],
) -> None:
    """Which of two headers counts differs between proxies and frameworks; doxa counts
    neither, so a key smuggled in after a proxy's own cannot pick the tenant."""
    headers = [("Authorization", f"Bearer {key}") for key in keys]
    for answer in (await client.post("/v1/users/u-42/events", json={"events": SAYS},
                                     headers=headers),
                   await client.get("/v1/users/u-42/model", headers=headers),
                   await client.delete("/v1/users/u-42", headers=headers)):
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "urn:doxa:problem:malformed-request"
    assert await engine.users() == []


def test_an_erased_user_and_an_unstorable_value_have_their_own_problems() -> None:
    from doxa.errors import StoreDataError, UserErasedError
    from doxa.server.problems import doxa_error

    erased = doxa_error(UserErasedError("acme/u-42", 0, 1))
    assert (erased.status, erased.slug) == (409, "user-erased")
    assert "acme/" not in erased.detail
    refused = doxa_error(StoreDataError("PostgreSQL refused a value: NUL"))
    assert (refused.status, refused.slug) == (422, "unstorable-value")


@pytest.mark.parametrize(("params", "field"), [
    ({"min_confidence": "1.5"}, "min_confidence"),
    ({"min_confidence": "high"}, "min_confidence"),
    ({"limit": "0"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"at": "2026-03-02T10:00:00"}, "at"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
async def test_query_parameters_are_validated_by_name(
    client: httpx.AsyncClient, params: dict[str, str], field: str,
) -> None:
    await ingest(client, "u-42", SAYS)
    answer = await client.get("/v1/users/u-42/beliefs", params=params, headers=auth(ACME))
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_an_outcome_must_be_one_of_four(client: httpx.AsyncClient) -> None:
    await ingest(client, "u-42", SAYS)
    answer = await client.post("/v1/users/u-42/outcomes", headers=auth(ACME),
                               json={"record_id": "r_1", "outcome": "loved"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "outcome"


# -- the provider behind the server --------------------------------------------------------


async def test_a_provider_outage_is_a_503_with_retry_after_and_nothing_is_written(
    client: httpx.AsyncClient, engine: Engine, fake: FakeProvider,
) -> None:
    fake.faults = ["503"]
    answer = await ingest(client, "u-42", SAYS)
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
    assert answer.json()["type"] == "urn:doxa:problem:provider-unavailable"
    assert await engine.users() == []
    assert (await ingest(client, "u-42", SAYS)).json()["events_new"] == 3  # retry works


async def test_a_provider_refusal_is_a_502(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.faults = ["401"]
    answer = await ingest(client, "u-42", SAYS)
    assert answer.status_code == 502 and "retry-after" not in answer.headers
    assert answer.json()["type"] == "urn:doxa:problem:provider-refused"


async def test_a_full_ingest_queue_answers_503(engine: Engine, fake: FakeProvider) -> None:
    import asyncio

    fake.latency_s = 0.3
    limits = ServerLimits(max_concurrent_ingests=1, max_queued_ingests=0)
    async with client_for(engine, limits) as client:
        first, second = await asyncio.gather(
            ingest(client, "u-1", SAYS[:1]), ingest(client, "u-2", SAYS[:1]))
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [200, 503]
    busy = first if first.status_code == 503 else second
    assert busy.headers["retry-after"] == "5"


def test_problem_details_are_json_with_a_stable_type() -> None:
    from doxa.server.problems import field_name, problem_bytes

    assert field_name(("body", "events", 3, "timestamp")) == ("events[3].timestamp", "body")
    assert field_name(("query", "min_confidence")) == ("min_confidence", "query")
    body = json.loads(problem_bytes(413, "payload-too-large", "too big", "/v1/x"))
    assert body == {"type": "urn:doxa:problem:payload-too-large",
                    "title": "Request Entity Too Large", "status": 413, "detail": "too big",
                    "instance": "/v1/x"}
