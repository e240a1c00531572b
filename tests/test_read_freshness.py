"""A cached read never serves a model older than the last commit.

The SQL stores keep each user's last model parsed and serve it again while the user's row
names the same commit (`doxa.store.snapshots`). These tests hold them to what a reader at a
decision point relies on: after a commit returns, every later read, by this engine or by
another engine on the same database (another process), shows that commit or a newer one,
with the records a cold load of the same version shows. PostgreSQL runs against
`DOXA_TEST_POSTGRES_URL` (scripts/pg-test-cluster.sh), as in test_store.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from builders import seed_goal
from doxa.calibration.apply import Calibrator
from doxa.calibration.profile import CalibrationProfile
from doxa.engine import Engine
from doxa.model.records import Record, UserModel
from doxa.store import open_store

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
ROUNDS = 8


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres" and not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must set DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
        pytest.skip("no DOXA_TEST_POSTGRES_URL")
    return PG_URL or "" if request.param == "postgres" else f"sqlite:///{tmp_path / 'r.db'}"


@pytest.fixture
async def engines(url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one database: two processes, as far as the stores can tell."""
    a, b = Engine(store=url), Engine(store=url)
    yield a, b
    await a.close()
    await b.close()


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"  # postgres is shared between tests


async def seed(engine: Engine, user_id: str, statement: str) -> Record:
    return await seed_goal(engine.store, user_id, statement,
                           generation=await engine.generation(user_id))


async def cold(url: str, user_id: str) -> UserModel:
    """The stored model as a store with nothing cached reads it."""
    store = open_store(url)
    try:
        return await store.load(user_id)
    finally:
        await store.close()


async def test_warm_reads_show_every_commit_of_either_engine(
    url: str, engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    u = user()
    record = await seed(a, u, "Wants SAML single sign-on before rollout")
    for n in range(ROUNDS):
        writer = (a, b)[n % 2]
        for reader in (a, b):  # both warm: each holds the version before this commit
            await reader.model(u)
        await writer.record_outcome(u, record.id, ("engaged", "ignored")[n % 3 == 0],
                                    event_id=f"o{n}")
        truth = await cold(url, u)
        assert truth.version == n + 2
        for reader in (a, b):
            seen = await reader.model(u)
            assert (seen.version, seen.records) == (truth.version, truth.records), (n, reader)
            assert dict(seen.events) == dict(truth.events)


async def test_a_user_deleted_and_rebuilt_to_the_same_version_is_read_anew(
    url: str, engines: tuple[Engine, Engine],
) -> None:
    """Version numbers start again after a delete: a reader holding version 1 of the old
    user must not take the new user's version 1 for it."""
    a, b = engines
    u = user()
    await seed(b, u, "Wants SAML single sign-on before rollout")
    before = await a.model(u)
    assert before.version == 1
    await b.delete_user(u)
    assert (await a.model(u)).records == ()
    await seed(b, u, "Prefers weekly digests over daily mail")
    after = await a.model(u)
    assert after.version == 1
    assert [r.statement for r in after.records] == ["Prefers weekly digests over daily mail"]
    assert after.records == (await cold(url, u)).records


async def test_a_reader_racing_a_writer_never_reads_older_than_the_last_commit(
    url: str, engines: tuple[Engine, Engine],
) -> None:
    """Readers on both engines read without pause while one engine commits: every read
    shows at least the version whose commit had returned when the read began, and each
    version's records are the ones a cold load of that version found."""
    writer, other = engines
    u = user()
    record = await seed(writer, u, "Wants SAML single sign-on before rollout")
    last = 1
    truth = {1: (await cold(url, u)).records}
    seen: list[tuple[int, int, tuple[Record, ...]]] = []
    done = asyncio.Event()

    async def read(engine: Engine) -> None:
        while not done.is_set():
            floor = last
            model = await engine.model(u)
            seen.append((floor, model.version, model.records))
            await asyncio.sleep(0)

    async def write() -> None:
        nonlocal last
        try:
            for n in range(ROUNDS):
                await writer.record_outcome(u, record.id, "engaged", event_id=f"race{n}")
                last = n + 2
                truth[last] = (await cold(url, u)).records
        finally:
            done.set()

    await asyncio.gather(write(), *(read(e) for e in (writer, other, other)))
    assert len({version for _, version, _ in seen}) > 2  # the readers did see it move
    for floor, version, records in seen:
        assert version >= floor
        assert records == truth[version], version


async def test_a_calibrated_read_is_kept_between_commits_and_never_older_than_the_last(
    url: str,
) -> None:
    """With a calibration profile the engine reads each record through it; that view is
    kept while the store hands back the same stored model (so the server can keep its
    pages) and made anew from the first read after any engine's commit."""
    hand = CalibrationProfile(name="hand", model="openai/gpt-4o-mini", prompt_version="any",
                              intercept=-0.5, weights={"evidence_score": 1.0})
    a = Engine(store=url, calibration=hand)
    b = Engine(store=url, calibration=hand)
    try:
        u = user()
        record = await seed(a, u, "Wants SAML single sign-on before rollout")
        for n in range(ROUNDS):
            first = await a.model(u)
            assert await a.model(u) is first  # nothing committed: the same view
            assert first.calibrated
            await (a, b)[n % 2].record_outcome(u, record.id, ("engaged", "ignored")[n % 2],
                                               event_id=f"c{n}")
            truth = await cold(url, u)
            seen = await a.model(u)
            assert seen is not first and seen.version == truth.version == n + 2
            assert [r.evidence_score for r in seen.records] == [
                r.confidence for r in truth.records]
            assert [r.confidence for r in seen.records] == [
                r.confidence for r in Calibrator(only=hand).calibrate(truth).records]
            assert seen.records[0].confidence != truth.records[0].confidence  # calibrated
        faded = await a.model(u, at=truth.records[0].updated_at)
        assert faded is not await a.model(u, at=truth.records[0].updated_at)  # not kept
    finally:
        await a.close()
        await b.close()


async def test_a_reload_after_another_engines_commit_reuses_only_what_the_rows_vouch_for(
    url: str, engines: tuple[Engine, Engine],
) -> None:
    """After another engine's commit the reader parses only the records whose stored hash
    moved and the events whose stored text moved; every other object is the one it held,
    and the whole equals a cold load. An event rewritten under the same id (its text
    changed, its record not) is read anew, not served from the held snapshot."""
    a, b = engines
    u = user()
    for statement in ("Wants SAML single sign-on before rollout",
                      "Needs a SOC 2 report for procurement",
                      "Prefers weekly digests over daily mail"):
        await seed(b, u, statement)
    before = await a.model(u)
    target = before.records[1]
    await b.record_outcome(u, target.id, "engaged", event_id="o-reuse")
    after = await a.model(u)
    truth = await cold(url, u)
    assert (after.version, after.records) == (truth.version, truth.records)
    assert dict(after.events) == dict(truth.events)
    for old, new in zip(before.records, after.records, strict=True):
        assert (new is old) == (old.id != target.id), old.statement  # only the changed one
    assert all(after.events[k] is before.events[k] for k in before.events)

    cited = before.records[0].evidence[0].event_id
    stored = await b.store.load(u)
    edited = stored.events[cited].model_copy(update={"text": "We need SAML SSO, and soon"})
    await b.store.commit(stored, expected_version=stored.version, changes=[],
                         events=[edited], processed_ids=[])
    reread = await a.model(u)
    assert reread.version == stored.version + 1
    assert reread.events[cited].text == "We need SAML SSO, and soon"
    assert reread.records == truth.records and reread.records[0] is after.records[0]
    assert dict(reread.events) == dict((await cold(url, u)).events)
