"""The server's rendered-read cache: the same bytes as a fresh render, never a stale page.

The app over engine A keeps each rendered page while the store hands back the same model
object; engine B on the same database (another process) commits, and the next GET must
show B's commit. PostgreSQL runs against `DOXA_TEST_POSTGRES_URL`, as in test_store.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from builders import seed_goal
from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.server.app import create_app
from doxa.server.auth import KeyRing
from doxa.server.settings import ServerLimits

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
ACME, GLOBEX = "acme-key-0123456789abcdef", "globex-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ACME}"}


def keyring() -> KeyRing:
    ring = KeyRing()
    ring.add_key("acme", ACME)
    ring.add_key("globex", GLOBEX)
    return ring


def client(engine: Engine, limits: ServerLimits | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine, keyring(),
                                                                          limits)),
                             base_url="http://doxa")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres" and not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must set DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
        pytest.skip("no DOXA_TEST_POSTGRES_URL")
    return {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 's.db'}",
            "postgres": PG_URL or ""}[request.param]


@pytest.fixture
async def engines(url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    """Engine A behind the app and engine B writing beside it (the same store object for
    memory://, which no other process can share)."""
    a = Engine(store=url)
    b = Engine(store=a.store if url == "memory://" else url)
    yield a, b
    await a.close()
    if b.store is not a.store:
        await b.close()


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


READS = ["/model", "/model?limit=1", "/goals?min_confidence=0.1", "/beliefs",
         "/goals?context=general&limit=5"]


async def test_kept_pages_are_the_bytes_a_fresh_render_gives(
    engines: tuple[Engine, Engine],
) -> None:
    a, _ = engines
    u = uid()
    await seed_goal(a.store, f"acme/{u}", "Wants SAML single sign-on before rollout")
    await seed_goal(a.store, f"acme/{u}", "Needs a SOC 2 report for procurement")
    async with client(a) as kept, client(a, ServerLimits(read_cache_bytes=0)) as fresh:
        for path in READS:
            first = await kept.get(f"/v1/users/{u}{path}", headers=AUTH)
            again = await kept.get(f"/v1/users/{u}{path}", headers=AUTH)
            uncached = await fresh.get(f"/v1/users/{u}{path}", headers=AUTH)
            assert first.status_code == again.status_code == uncached.status_code == 200
            assert first.content == again.content == uncached.content, path
            assert first.headers["content-type"] == uncached.headers["content-type"]
        reads = kept._transport.app.state.doxa.reads  # type: ignore[attr-defined]
        assert len(reads._pages) == len(READS) and reads.held_bytes > 0


async def test_a_page_is_never_older_than_the_last_commit_of_any_engine(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    u = uid()
    record = await seed_goal(b.store, f"acme/{u}", "Wants SAML single sign-on before rollout")
    async with client(a) as http:
        for n in range(6):
            for path in READS[:3]:  # warm: each page is held for the current version
                await http.get(f"/v1/users/{u}{path}", headers=AUTH)
            with tenant_scoped_user_ids():  # the store's id, as the server writes it
                await b.record_outcome(f"acme/{u}", record.id, ("engaged", "ignored")[n % 2],
                                       event_id=f"o{n}")
            truth = await b.model(f"acme/{u}")
            page = (await http.get(f"/v1/users/{u}/model", headers=AUTH)).json()
            assert page["version"] == truth.version == n + 2
            [held] = page["records"]
            assert held["confidence"] == truth.records[0].confidence
            assert [e["event_id"] for e in held["evidence"]][-1] == f"o{n}"
            goals = (await http.get(f"/v1/users/{u}/goals?min_confidence=0.1",
                                    headers=AUTH)).json()["records"]
            assert [g["confidence"] for g in goals] == [truth.records[0].confidence]
        await b.delete_user(f"acme/{u}")
        assert (await http.get(f"/v1/users/{u}/model", headers=AUTH)).status_code == 404
        await seed_goal(b.store, f"acme/{u}", "Prefers weekly digests over daily mail",
                        generation=await b.generation(f"acme/{u}"))
        page = (await http.get(f"/v1/users/{u}/model", headers=AUTH)).json()
        assert [r["statement"] for r in page["records"]] == [
            "Prefers weekly digests over daily mail"]


async def test_tenants_pages_and_faded_reads_are_kept_apart() -> None:
    engine = Engine(store="memory://")
    u = uid()
    await seed_goal(engine.store, f"acme/{u}", "Wants SAML single sign-on before rollout")
    await seed_goal(engine.store, f"globex/{u}", "Prefers weekly digests over daily mail")
    async with client(engine) as http:
        mine = (await http.get(f"/v1/users/{u}/model", headers=AUTH)).json()
        theirs = (await http.get(f"/v1/users/{u}/model",
                                 headers={"Authorization": f"Bearer {GLOBEX}"})).json()
        assert [r["statement"] for r in mine["records"]] != [
            r["statement"] for r in theirs["records"]]
        reads = http._transport.app.state.doxa.reads  # type: ignore[attr-defined]
        held = len(reads._pages)
        later = datetime(2027, 6, 1, tzinfo=UTC).isoformat()
        faded = await http.get(f"/v1/users/{u}/model", params={"at": later}, headers=AUTH)
        assert faded.json()["records"][0]["confidence"] < mine["records"][0]["confidence"]
        assert len(reads._pages) == held  # a read faded to a moment is not kept
    await engine.close()


async def test_the_cache_holds_no_more_bytes_than_its_budget() -> None:
    engine = Engine(store="memory://")
    users = [uid() for _ in range(6)]
    for u in users:
        await seed_goal(engine.store, f"acme/{u}", f"Wants SAML single sign-on for {u}")
    async with client(engine, ServerLimits(read_cache_bytes=2048)) as http:
        sizes = [len((await http.get(f"/v1/users/{u}/model", headers=AUTH)).content)
                 for u in users]
        reads = http._transport.app.state.doxa.reads  # type: ignore[attr-defined]
        assert sum(sizes) > 2048 >= reads.held_bytes > 0
        assert [key[0] for key in reads._pages] == [f"acme/{u}" for u in users][
            -len(reads._pages):]  # the most recently read stay
        small = ServerLimits(read_cache_bytes=512)  # under one page
    async with client(engine, small) as http:
        await http.get(f"/v1/users/{users[0]}/model", headers=AUTH)
        assert http._transport.app.state.doxa.reads.held_bytes == 0  # type: ignore[attr-defined]
    await engine.close()


async def test_an_etag_gets_304_until_any_engine_commits_then_a_new_tag(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    u = uid()
    record = await seed_goal(b.store, f"acme/{u}", "Wants SAML single sign-on before rollout")
    async with client(a) as http, client(a, ServerLimits(read_cache_bytes=0)) as fresh:
        seen: set[str] = set()
        for n in range(4):
            tags = {}
            for path in READS:
                first = await http.get(f"/v1/users/{u}{path}", headers=AUTH)
                tag = first.headers["etag"]
                assert first.status_code == 200 and first.headers["cache-control"] == (
                    "private, no-cache")
                # The tag is the bytes' hash: a page rendered afresh carries the same one.
                assert (await fresh.get(f"/v1/users/{u}{path}", headers=AUTH)).headers[
                    "etag"] == tag
                again = await http.get(f"/v1/users/{u}{path}",
                                       headers=AUTH | {"If-None-Match": tag})
                assert again.status_code == 304 and again.content == b""
                assert again.headers["etag"] == tag
                tags[path] = tag
            shown = {p: t for p, t in tags.items() if p != "/beliefs"}  # the goal's pages
            assert not seen & set(shown.values())  # no tag of an older version comes back
            seen |= set(shown.values())
            with tenant_scoped_user_ids():
                await b.record_outcome(f"acme/{u}", record.id, ("engaged", "ignored")[n % 2],
                                       event_id=f"o{n}")
            truth = await b.model(f"acme/{u}")
            for path in shown:  # the tag held before B's commit no longer matches
                after = await http.get(f"/v1/users/{u}{path}",
                                       headers=AUTH | {"If-None-Match": tags[path]})
                assert after.status_code == 200, path
                assert after.headers["etag"] != tags[path]
                assert after.content == (await fresh.get(f"/v1/users/{u}{path}",
                                                         headers=AUTH)).content
            # A page the commit left as it was (no beliefs, before and after) is still the
            # same bytes, so its tag still gets 304: the tag vouches for bytes, not versions.
            empty = await http.get(f"/v1/users/{u}/beliefs",
                                   headers=AUTH | {"If-None-Match": tags["/beliefs"]})
            assert empty.status_code == 304
            page = (await http.get(f"/v1/users/{u}/model", headers=AUTH)).json()
            assert page["version"] == truth.version


async def test_if_none_match_lists_weak_tags_and_star() -> None:
    engine = Engine(store="memory://")
    u = uid()
    await seed_goal(engine.store, f"acme/{u}", "Wants SAML single sign-on before rollout")
    async with client(engine) as http:
        path = f"/v1/users/{u}/model"
        tag = (await http.get(path, headers=AUTH)).headers["etag"]
        for header, status in [(f'"other", W/{tag}', 304), ("*", 304), (f"{tag}, \"x\"", 304),
                               ('"nope"', 200), (tag.strip('"'), 200)]:
            answer = await http.get(path, headers=AUTH | {"If-None-Match": header})
            assert answer.status_code == status, header
            assert answer.headers["etag"] == tag
        # A page faded to a moment is not kept but is tagged and revalidated all the same.
        later = {"at": datetime(2027, 6, 1, tzinfo=UTC).isoformat()}
        faded = await http.get(path, params=later, headers=AUTH)
        assert faded.headers["etag"] != tag
        again = await http.get(path, params=later,
                               headers=AUTH | {"If-None-Match": faded.headers["etag"]})
        assert again.status_code == 304
        # No tag for a user that is not there: 404 whatever If-None-Match says.
        assert (await http.get(f"/v1/users/{uid()}/model",
                               headers=AUTH | {"If-None-Match": "*"})).status_code == 404
    await engine.close()
