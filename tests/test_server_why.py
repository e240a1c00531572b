"""The "why" endpoints: POST observations and links, GET twin; tenant-scoped like the rest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from doxa.engine import Engine
from doxa.server.app import create_app
from doxa.server.auth import KeyRing

ACME = "acme-key-0123456789abcdef"
ACME_READ = "acme-readonly-0123456789"
GLOBEX = "globex-key-0123456789abcdef"
AT = "2026-03-02T10:00:00Z"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    ring = KeyRing()
    ring.add_key("acme", ACME)
    ring.add_key("acme", ACME_READ, ["read"])
    ring.add_key("globex", GLOBEX)
    engine = Engine(store="memory://")
    app = create_app(engine, ring)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://doxa") as c:
        yield c
    await engine.close()


async def observe(client: httpx.AsyncClient, body: dict[str, object],
                  key: str = ACME) -> httpx.Response:
    return await client.post("/v1/users/u-42/observations", json=body, headers=auth(key))


async def test_observations_links_and_the_twin_over_http(client: httpx.AsyncClient) -> None:
    goal = await observe(client, {"kind": "goal", "statement": "Wants to launch the AI pilot",
                                  "id": "g1", "at": AT, "evidence": ["crm-1"]})
    assert goal.status_code == 200, goal.text
    assert goal.json()["user_id"] == "u-42"
    goal_id = goal.json()["changes"][0]["record_id"]
    again = await observe(client, {"kind": "goal", "statement": "Wants to launch the AI pilot",
                                   "id": "g1", "at": AT})
    assert again.json()["changes"] == []
    motive = await observe(client, {"kind": "motivation", "statement": "Needs to prove AI ROI",
                                    "id": "m1", "at": AT, "source": "rule:notes",
                                    "confidence": 0.7})
    assert motive.status_code == 200
    linked = await client.post("/v1/users/u-42/links", headers=auth(ACME), json={
        "goal_id": "g1", "relation": "because", "target_id": "m1", "evidence": ["crm-1"],
        "id": "l1", "at": AT})
    assert linked.status_code == 200, linked.text
    assert linked.json()["changes"][0]["action"] == "linked"

    twin = await client.get("/v1/users/u-42/twin", headers=auth(ACME_READ))
    assert twin.status_code == 200, twin.text
    body = twin.json()
    assert body["user_id"] == "u-42"
    [g] = body["goals"]
    assert (g["record_id"], g["motivations"][0]["statement"]) == (goal_id,
                                                                  "Needs to prove AI ROI")
    assert "Why user u-42 acts as they do" in body["prompt"]
    assert "acme" not in json.dumps(body)

    other = await client.get("/v1/users/u-42/twin", headers=auth(GLOBEX))
    assert other.status_code == 404  # another tenant's user is no user of yours


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "belief", "statement": "Believes setup is hard", "source": "crm"}, "source"),
    ({"kind": "belief", "statement": "Believes setup is hard", "relation": "contradicts"},
     "related_record_id"),
])
async def test_a_bad_observation_is_a_422_naming_the_field(client: httpx.AsyncClient,
                                                           body: dict[str, object],
                                                           field: str) -> None:
    answer = await observe(client, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == field


async def test_a_link_between_the_wrong_kinds_is_a_422(client: httpx.AsyncClient) -> None:
    await observe(client, {"kind": "goal", "statement": "Wants to launch the pilot", "id": "g"})
    await observe(client, {"kind": "belief", "statement": "Believes setup is hard", "id": "b"})
    answer = await client.post("/v1/users/u-42/links", headers=auth(ACME), json={
        "goal_id": "g", "relation": "because", "target_id": "b"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "target_id"
    assert "points at a motivation" in answer.json()["detail"]


async def test_a_read_only_key_cannot_observe(client: httpx.AsyncClient) -> None:
    answer = await observe(client, {"kind": "goal", "statement": "Wants x y z"}, key=ACME_READ)
    assert answer.status_code == 403
