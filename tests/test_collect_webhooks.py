"""The collection webhooks (issue 17, item 2): `POST /v1/collect/{segment,posthog,
rudderstack}` store a delivery's events in the durable buffer and answer at once; a worker
drain then builds the same model as the documented sample's doxa-format twin. Segment's
signature is checked when a tenant has a secret; errors name the field where it was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.events.formats import read_payload
from doxa.events.parse import load_file
from doxa.model.records import UserModel
from doxa.server.app import create_app
from doxa.server.auth import KeyRing
from doxa.server.collect import parse_segment_secrets, segment_signature
from doxa.server.settings import ServerLimits
from doxa.testing.fake_provider import FakeProvider
from test_server import make_engine

SAMPLES = Path(__file__).parents[1] / "fixtures" / "collect"
ACME = "acme-key-0123456789abcdef"
ACME_READ = "acme-readonly-0123456789"
GLOBEX = "globex-key-0123456789abcdef"
SECRET = "acme-segment-shared-secret"
USER = "usr-4821"


def sample(fmt: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLES / f"{fmt}.jsonl").read_text().splitlines()]


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    yield provider
    await provider.stop()


@pytest.fixture
async def engine(fake: FakeProvider) -> AsyncIterator[Engine]:
    made = make_engine(fake)
    yield made
    await made.close()


def client_for(engine: Engine, *, secrets: dict[str, str] | None = None,
               limits: ServerLimits | None = None) -> httpx.AsyncClient:
    ring = KeyRing()
    ring.add_key("acme", ACME)
    ring.add_key("acme", ACME_READ, ["read"])
    ring.add_key("globex", GLOBEX)
    app = create_app(engine, ring, limits, segment_secrets=secrets)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://doxa")


async def post(client: httpx.AsyncClient, source: str, payload: object, key: str = ACME,
               **headers: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(f"/v1/collect/{source}", content=body,
                             headers=auth(key, **{"Content-Type": "application/json"},
                                          **headers))


def essence(model: UserModel) -> list[tuple[Any, ...]]:
    return sorted((r.kind, r.statement, r.context, r.status, round(r.confidence, 6),
                   tuple(sorted(r.evidence_ids())), r.valid_from) for r in model.records)


async def twin_model(fake: FakeProvider, fmt: str, only: set[str] | None = None) -> UserModel:
    twin = [e for e in load_file(SAMPLES / f"{fmt}.doxa.jsonl").events
            if only is None or e.id in only]
    engine = make_engine(fake)
    try:
        await engine.ingest(USER, twin)
        return await engine.model(USER)
    finally:
        await engine.close()


async def drained_model(engine: Engine, user: str) -> UserModel:
    await engine.run_worker(drain=True, poll_s=0.01)
    with tenant_scoped_user_ids():
        return await engine.model(user)


async def buffered(engine: Engine) -> int:
    summaries = await engine.store.buffer_summaries(now=datetime.now(UTC),
                                                    high_signal_types=frozenset())
    return sum(s.events for s in summaries)


# -- each sample, delivered as each tool delivers it, builds the twin's model ---------------


@pytest.mark.parametrize(("fmt", "wrap"), [
    ("segment", lambda calls: calls),                      # Webhooks (Actions) batching
    ("segment", lambda calls: {"batch": calls}),           # an HTTP API batch body
    ("rudderstack", lambda calls: calls),
    ("posthog", lambda events: {"batch": events}),
])
async def test_a_delivered_sample_builds_the_same_model_as_its_twin(
        fmt: str, wrap: Any, engine: Engine, fake: FakeProvider) -> None:
    calls = sample(fmt)
    expected = len(read_payload(calls, fmt))
    async with client_for(engine) as client:
        answer = await post(client, fmt, wrap(calls))
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"events_received": expected, "events_new": expected}
        again = await post(client, fmt, wrap(calls))
        assert again.json() == {"events_received": expected, "events_new": 0}
    assert fake.stats.requests == 0, "a delivery is stored, not extracted, before it answers"
    assert await buffered(engine) == expected
    model = await drained_model(engine, f"acme/{USER}")
    assert model.records
    assert essence(model) == essence(await twin_model(fake, fmt))
    assert await buffered(engine) == 0


async def test_single_event_deliveries_build_the_same_model(engine: Engine,
                                                            fake: FakeProvider) -> None:
    """One call per request, as the classic Webhooks destination sends them (each call
    here names its user: aliasing needs the identify in the same delivery or file)."""
    calls = [c for c in sample("segment") if c.get("userId") == USER and c["type"] != "alias"]
    async with client_for(engine) as client:
        for call in calls:
            answer = await post(client, "segment", call)
            assert answer.status_code == 202, answer.text
            assert answer.json()["events_new"] == 1
    ids = {e.id for c in calls for e in read_payload(c, "segment")}
    model = await drained_model(engine, f"acme/{USER}")
    assert essence(model) == essence(await twin_model(fake, "segment", only=ids))


async def test_the_posthog_webhook_destination_body(engine: Engine) -> None:
    [body] = [d for d in sample("posthog") if isinstance(d.get("event"), dict)]
    async with client_for(engine) as client:
        answer = await post(client, "posthog", body)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"events_received": 1, "events_new": 1}


async def test_tenants_own_their_deliveries(engine: Engine) -> None:
    call = {"type": "track", "event": "Plan Chosen", "userId": USER, "messageId": "m1",
            "timestamp": "2026-03-01T10:00:00Z"}
    async with client_for(engine) as client:
        for key in (ACME, GLOBEX):
            assert (await post(client, "segment", call, key)).json()["events_new"] == 1
    summaries = await engine.store.buffer_summaries(now=datetime.now(UTC),
                                                    high_signal_types=frozenset())
    assert sorted(s.user_id for s in summaries) == [f"acme/{USER}", f"globex/{USER}"]


# -- the signature ---------------------------------------------------------------------------


CALL = {"type": "track", "event": "Plan Chosen", "userId": USER, "messageId": "m1",
        "timestamp": "2026-03-01T10:00:00Z", "properties": {"plan": "team"}}


async def test_a_good_signature_is_accepted(engine: Engine) -> None:
    body = json.dumps(CALL).encode()
    async with client_for(engine, secrets={"acme": SECRET}) as client:
        answer = await client.post("/v1/collect/segment", content=body, headers=auth(
            ACME, **{"X-Signature": segment_signature(body, SECRET),
                     "Content-Type": "application/json"}))
    assert answer.status_code == 202, answer.text
    assert await buffered(engine) == 1


@pytest.mark.parametrize("signature", [None, "", "0" * 40, "not-hex"])
async def test_a_bad_or_missing_signature_stores_nothing(engine: Engine,
                                                         signature: str | None) -> None:
    headers = {} if signature is None else {"X-Signature": signature}
    async with client_for(engine, secrets={"acme": SECRET}) as client:
        answer = await post(client, "segment", CALL, **headers)
    assert answer.status_code == 401
    assert answer.json()["type"] == "urn:doxa:problem:bad-signature"
    assert await buffered(engine) == 0


async def test_a_signature_over_other_bytes_is_refused(engine: Engine) -> None:
    signed = json.dumps(CALL).encode()
    sent = json.dumps(CALL | {"properties": {"plan": "enterprise"}}).encode()
    async with client_for(engine, secrets={"acme": SECRET}) as client:
        answer = await client.post("/v1/collect/segment", content=sent, headers=auth(
            ACME, **{"X-Signature": segment_signature(signed, SECRET),
                     "Content-Type": "application/json"}))
    assert answer.status_code == 401
    assert await buffered(engine) == 0


async def test_a_tenant_without_a_secret_needs_no_signature(engine: Engine) -> None:
    async with client_for(engine, secrets={"acme": SECRET}) as client:
        answer = await post(client, "segment", CALL, GLOBEX)
    assert answer.status_code == 202


def test_segment_secrets_come_as_tenant_secret_pairs() -> None:
    assert parse_segment_secrets("acme:s1:with-colon, globex:s2") == {
        "acme": "s1:with-colon", "globex": "s2"}
    for bad in ("acme", "acme:", "Bad Tenant:x", "acme:a,acme:b"):
        with pytest.raises(Exception, match="DOXA_SEGMENT_SECRETS item"):
            parse_segment_secrets(bad)


# -- auth and bad payloads ---------------------------------------------------------------------


async def test_webhooks_need_a_key_with_write_scope(engine: Engine) -> None:
    async with client_for(engine) as client:
        anonymous = await client.post("/v1/collect/segment", json=CALL)
        read_only = await post(client, "segment", CALL, ACME_READ)
    assert anonymous.status_code == 401
    assert read_only.status_code == 403
    assert await buffered(engine) == 0


@pytest.mark.parametrize(("source", "payload", "field"), [
    ("segment", {"batch": [CALL, {k: v for k, v in CALL.items() if k != "timestamp"}
                           | {"messageId": "m2"}]}, "batch[1].timestamp"),
    ("segment", [CALL, CALL | {"messageId": "bad id"}], "[1].messageId"),
    ("segment", CALL | {"userId": "acme/other"}, "userId"),
    ("rudderstack", CALL | {"type": "bogus"}, "type"),
    ("posthog", {"event": {"event": "x", "uuid": "e1", "timestamp": "2026-03-01T10:00:00Z"},
                 "person": {}}, "event.distinct_id"),
    ("posthog", [{"event": "x", "distinct_id": "u", "timestamp": "2026-03-01T10:00:00Z"},
                 "not an event"], "[1]"),
])
async def test_a_malformed_payload_names_the_field_and_stores_nothing(
        engine: Engine, source: str, payload: object, field: str) -> None:
    async with client_for(engine) as client:
        answer = await post(client, source, payload)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["detail"].startswith("nothing was stored")
    assert await buffered(engine) == 0


async def test_a_body_that_is_not_json_is_a_400(engine: Engine) -> None:
    async with client_for(engine) as client:
        answer = await client.post("/v1/collect/posthog", content=b"{nope", headers=auth(
            ACME, **{"Content-Type": "application/json"}))
    assert answer.status_code == 400
    assert answer.json()["type"] == "urn:doxa:problem:malformed-body"


async def test_more_events_than_the_limit_is_a_422(engine: Engine) -> None:
    calls = [CALL | {"messageId": f"m{i}"} for i in range(3)]
    async with client_for(engine, limits=ServerLimits(max_events=2)) as client:
        answer = await post(client, "segment", calls)
    assert answer.status_code == 422
    assert "at most 2 per request" in answer.json()["detail"]
