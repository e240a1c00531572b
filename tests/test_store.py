"""One suite for every store: memory, SQLite and PostgreSQL behave the same.

PostgreSQL runs against `DOXA_TEST_POSTGRES_URL` (`.ci/run` starts a throwaway cluster with
scripts/pg-test-cluster.sh); without it the postgres cases skip locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from builders import NOW, batch, chat, said
from doxa.core.flush import BufferSummary
from doxa.core.merge import merge
from doxa.errors import (
    BufferClaimLostError,
    StoreConflictError,
    StoreDataError,
    UserErasedError,
)
from doxa.events.parse import Event
from doxa.model.records import UserModel
from doxa.store import Store, open_store

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
B0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres" and not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must set DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
        pytest.skip("no DOXA_TEST_POSTGRES_URL")
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'doxa.db'}",
           "postgres": PG_URL or ""}[request.param]
    opened = open_store(url)
    yield opened
    await opened.close()


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"  # postgres is shared between tests


def model_for(user_id: str) -> tuple[UserModel, list[str], list]:  # type: ignore[type-arg]
    b = batch(chat("e1", "We need SOC 2 Type II, secret-marker-xyz", user=user_id),
              chat("e2", "and SAML SSO", user=user_id))
    result = merge(UserModel(user_id=user_id),
                   [said("goal", "Needs a SOC 2 report", "e1"),
                    said("goal", "Wants SAML single sign-on", "e2")], b, now=NOW,
                   prompt_version="p@1")
    return result.model, list(b.events), list(b.events.values())


async def test_round_trip_with_evidence_history_events_and_ledger(store: Store) -> None:
    u = user()
    model, ids, events = model_for(u)
    assert await store.commit(model, expected_version=0, changes=[], events=events,
                              processed_ids=ids) == 1
    loaded = await store.load(u)
    assert loaded.records == model.records and loaded.version == 1
    assert set(loaded.events) == {"e1", "e2"}
    assert await store.processed(u, ["e1", "e2", "e9"]) == {"e1", "e2"}
    assert u in await store.users()
    assert (await store.events(u, ["e2"]))["e2"].text == "and SAML SSO"


async def test_a_stale_version_conflicts_and_writes_nothing(store: Store) -> None:
    u = user()
    model, ids, events = model_for(u)
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    changed = model.with_records(model.records[:1])
    with pytest.raises(StoreConflictError):
        await store.commit(changed, expected_version=0, changes=[], events=[],
                           processed_ids=["e7"])
    assert len((await store.load(u)).records) == 2
    assert await store.processed(u, ["e7"]) == set()


async def test_two_concurrent_writers_on_one_version_exactly_one_wins(store: Store) -> None:
    u = user()
    model, ids, events = model_for(u)
    outcomes = await asyncio.gather(*(store.commit(model, expected_version=0, changes=[],
                                                   events=events, processed_ids=ids)
                                      for _ in range(4)), return_exceptions=True)
    assert sum(isinstance(o, int) for o in outcomes) == 1
    assert sum(isinstance(o, StoreConflictError) for o in outcomes) == 3


async def test_a_failed_commit_leaves_nothing_behind(store: Store) -> None:
    u = user()
    model, ids, events = model_for(u)

    class Exploding(list):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield "e1"
            raise RuntimeError("killed mid-commit")

    with pytest.raises(RuntimeError):
        await store.commit(model, expected_version=0, changes=[], events=events,
                           processed_ids=Exploding())
    loaded = await store.load(u)
    assert (loaded.version, loaded.records) == (0, ())
    assert await store.processed(u, ids) == set()


async def test_delete_user_erases_every_row_and_cached_answer_and_spares_others(
    store: Store,
) -> None:
    u, other = user(), user()
    for who in (u, other):
        model, ids, events = model_for(who)
        await store.commit(model, expected_version=0, changes=[], events=events,
                           processed_ids=ids)
        await store.cache_put(f"k-{who}", who, "cached secret-marker-xyz")
    await store.delete_user(u)
    exported = await store.export_user(u)
    assert exported["records"] == [] and exported["events"] == [] and exported["ledger"] == []
    assert await store.cache_get(f"k-{u}") is None
    assert u not in await store.users()
    assert len((await store.load(other)).records) == 2
    assert await store.cache_get(f"k-{other}") == "cached secret-marker-xyz"


async def test_work_begun_before_a_delete_is_refused_and_work_begun_after_starts_fresh(
    store: Store,
) -> None:
    """A delete moves the user's erasure generation on in the same transaction: a commit
    carrying the generation its work began with is refused once a delete came in between
    (even at the version an emptied model has), and writes nothing; work that reads the
    generation after the delete builds a new model."""
    u = user()
    model, ids, events = model_for(u)
    before = await store.generation(u)
    assert before == 0
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids,
                       generation=before)
    await store.delete_user(u)
    after = await store.generation(u)
    assert after == before + 1
    for expected_version in (0, 1):
        with pytest.raises(UserErasedError):
            await store.commit(model, expected_version=expected_version, changes=[],
                               events=events, processed_ids=ids, generation=before)
    assert (await store.load(u)).records == () and await store.processed(u, ids) == set()
    assert u not in await store.users()
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids,
                       generation=after)
    assert len((await store.load(u)).records) == 2
    await store.delete_user(u)
    assert await store.generation(u) == after + 1


async def test_a_response_cached_under_a_generation_before_a_delete_is_not_kept(
    store: Store,
) -> None:
    u = user()
    before = await store.generation(u)
    await store.delete_user(u)
    await store.cache_put(f"k-{u}", u, "secret-marker-xyz", generation=before)
    assert await store.cache_get(f"k-{u}") is None
    await store.cache_put(f"k-{u}", u, "secret-marker-xyz", generation=before + 1)
    assert await store.cache_get(f"k-{u}") == "secret-marker-xyz"


async def test_a_value_the_store_refuses_is_a_typed_error_not_a_driver_exception(
    store: Store,
) -> None:
    """PostgreSQL text cannot hold NUL: the driver's DataError becomes `StoreDataError`
    (a `DoxaError` the server answers with a 422), never a raw 500."""
    u = user()
    if "Postgres" not in type(store).__name__:
        await store.cache_put(f"k-{u}", u, "a\x00b")  # memory and SQLite hold it
        assert await store.cache_get(f"k-{u}") == "a\x00b"
        return
    with pytest.raises(StoreDataError):
        await store.cache_put(f"k-{u}", u, "a\x00b")
    with pytest.raises(StoreDataError):
        await store.load("nul\x00user")


async def test_export_holds_records_events_and_ledger(store: Store) -> None:
    u = user()
    model, ids, events = model_for(u)
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    exported = await store.export_user(u)
    assert exported["version"] == 1 and sorted(exported["ledger"]) == ["e1", "e2"]
    assert {r["statement"] for r in exported["records"]} == {"Needs a SOC 2 report",
                                                              "Wants SAML single sign-on"}
    assert len(exported["records"][0]["history"]) == 1 and len(exported["events"]) == 2


async def test_sqlite_delete_leaves_no_text_of_the_user_in_any_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "scan.db"
    store = open_store(f"sqlite:///{path}")
    u = "u-scan"
    model, ids, events = model_for(u)
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    await store.cache_put("k", u, "secret-marker-xyz")
    await store.delete_user(u)
    await store.close()
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        for row in db.execute(f"SELECT * FROM {table}"):
            assert u not in repr(row) and "secret-marker-xyz" not in repr(row), table


async def test_sqlite_snapshot_never_serves_another_writers_model(tmp_path: Path) -> None:
    """Two stores on one file stand for two processes: each must see the other's commits,
    a delete, and a user re-created to the same version number with other content."""
    path = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = open_store(path), open_store(path)
    u = "u-shared"
    model, ids, events = model_for(u)
    await a.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    assert len((await a.load(u)).records) == 2  # a now holds a snapshot of version 1

    loaded_by_b = await b.load(u)
    fewer = loaded_by_b.with_records(loaded_by_b.records[:1])
    await b.commit(fewer, expected_version=1, changes=[], events=[], processed_ids=[])
    seen = await a.load(u)
    assert seen.version == 2 and len(seen.records) == 1

    await b.delete_user(u)
    assert (await a.load(u)).records == ()
    again, ids, events = model_for(u)
    again = again.with_records(again.records[1:])
    after = await b.generation(u)  # work begun after the delete
    await b.commit(again, expected_version=0, changes=[], events=events, processed_ids=ids,
                   generation=after)
    await b.commit(await b.load(u), expected_version=1, changes=[], events=[], processed_ids=[],
                   generation=after)
    # a's last snapshot was version 2 with the first record; the new version 2 differs.
    reread = await a.load(u)
    assert reread.version == 2
    assert [r.statement for r in reread.records] == [r.statement for r in again.records]
    await a.close()
    await b.close()


async def test_sqlite_commit_from_snapshot_writes_what_a_cold_load_reads(tmp_path: Path) -> None:
    path = f"sqlite:///{tmp_path / 'warm.db'}"
    warm = open_store(path)
    u = "u-warm"
    model, ids, events = model_for(u)
    await warm.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    loaded = await warm.load(u)
    changed = loaded.with_records(
        (loaded.records[0].model_copy(update={"confidence": 0.9}), *loaded.records[1:]))
    await warm.commit(changed, expected_version=1, changes=[], events=[], processed_ids=[])
    cold = open_store(path)
    from_disk, from_snapshot = await cold.load(u), await warm.load(u)
    assert from_disk.records == from_snapshot.records
    assert from_disk.version == from_snapshot.version == 2
    assert dict(from_disk.events) == dict(from_snapshot.events)
    await warm.close()
    await cold.close()


async def test_a_removed_and_a_replaced_record_commit_as_a_fresh_load_reads(
    store: Store, tmp_path: Path,
) -> None:
    """Stores write only the record objects a merge replaced: removing one record (as the
    cap's eviction does) and replacing another must still reach the rows, and the events the
    removed record alone cited leave the model."""
    u = user()
    model, ids, events = model_for(u)
    await store.commit(model, expected_version=0, changes=[], events=events, processed_ids=ids)
    loaded = await store.load(u)
    first, second = loaded.records
    kept = second.model_copy(update={"confidence": 0.9})
    await store.commit(loaded.with_records([kept]), expected_version=1, changes=[],
                       events=[], processed_ids=[])
    warm = await store.load(u)
    assert warm.records == (kept,) and warm.version == 2
    assert set(warm.events) == {e.event_id for e in kept.evidence}
    assert first.id not in {r.id for r in warm.records}
    if isinstance(store, type(open_store("memory://"))):
        return
    url = f"sqlite:///{tmp_path / 'doxa.db'}" if "Sqlite" in type(store).__name__ else PG_URL
    cold = open_store(url or "")
    try:
        assert (await cold.load(u)).records == warm.records
    finally:
        await cold.close()


def test_carried_events_read_only_replaced_records_and_match_a_full_recount() -> None:
    """The events a committed model carries, worked out from the records a merge replaced,
    are exactly those a full recount of every record's evidence finds: when a replaced
    record gains evidence, when it loses some, and when one is removed."""
    from doxa.store.base import carried_events

    u = user()
    b1 = batch(chat("e1", "We need SOC 2", user=u), chat("e2", "and SAML SSO", user=u))
    one = merge(UserModel(user_id=u), [said("goal", "Needs a SOC 2 report", "e1"),
                                       said("goal", "Wants SAML single sign-on", "e2")],
                b1, now=NOW, prompt_version="p").model
    pool = {**b1.events, **batch(chat("e3", "SOC 2 is a must", day=1, user=u)).events}
    committed = one.model_copy(update={"events": dict(b1.events)})
    b2 = batch(chat("e3", "SOC 2 is a must", day=1, user=u))
    gained = merge(committed, [said("goal", "Needs a SOC 2 report", "e3")], b2, now=NOW,
                   prompt_version="p").model
    first, second = committed.records
    lost = committed.with_records([first.model_copy(update={"evidence": ()}), second])
    removed = committed.with_records([second])
    for model in (gained, lost, removed):
        recount = {e.event_id for r in model.records for e in r.evidence}
        assert set(carried_events(model, committed, pool)) == recount


# -- the buffer of events waiting for a flush (Engine.add) ------------------------------------

def ev(event_id: str, u: str, kind: str = "chat_message") -> Event:
    return Event(id=event_id, user_id=u, type=kind, timestamp=B0, text="We need SSO")


async def test_adding_is_idempotent_by_event_id_and_skips_processed_events(
        store: Store) -> None:
    u = user()
    assert await store.buffer_add([(ev("e1", u), 3), (ev("e2", u), 3)], now=B0) == 2
    assert await store.buffer_add([(ev("e1", u), 3)], now=B0) == 0
    await store.commit(UserModel(user_id=u), expected_version=0, changes=[], events=[],
                       processed_ids=["e9"])
    assert await store.buffer_add([(ev("e9", u), 3)], now=B0) == 0
    [mine] = [s for s in await store.buffer_summaries(now=B0, high_signal_types=set())
              if s.user_id == u]
    assert (mine.events, mine.tokens, mine.claimed) == (2, 6, 0)


async def test_summaries_agree_with_the_reference_over_claims_and_leases(store: Store) -> None:
    u, later = user(), B0 + timedelta(minutes=5)
    await store.buffer_add([(ev("e1", u), 4), (ev("o1", u, "outcome"), 0)], now=B0)
    claim = await store.buffer_claim(u, "t1", now=B0, until=B0 + timedelta(minutes=1))
    await store.buffer_add([(ev("e2", u), 7)], now=later)
    rows = [("chat_message", 4, B0, True), ("outcome", 0, B0, True),
            ("chat_message", 7, later, False)]
    got = [s for s in await store.buffer_summaries(now=B0, high_signal_types={"outcome"})
           if s.user_id == u]
    assert got == [BufferSummary.of_rows(u, rows, {"outcome"})]
    assert (got[0].events, got[0].claimed, got[0].oldest) == (1, 2, later)
    # Once the lease has ended the claimed rows count as free again.
    expired = B0 + timedelta(minutes=2)
    [free] = [s for s in await store.buffer_summaries(now=expired, high_signal_types={"outcome"})
              if s.user_id == u]
    assert (free.events, free.high_signal, free.claimed, free.oldest) == (3, 1, 0, B0)
    assert {e.id for e in claim.events} == {"e1", "o1"}


async def test_a_claim_takes_only_free_rows_and_a_lapsed_one_is_taken_over(
        store: Store) -> None:
    u = user()
    await store.buffer_add([(ev("e1", u), 1)], now=B0)
    first = await store.buffer_claim(u, "a", now=B0, until=B0 + timedelta(seconds=60))
    assert [e.id for e in first.events] == ["e1"]
    assert (await store.buffer_claim(u, "b", now=B0 + timedelta(seconds=30),
                                     until=B0 + timedelta(seconds=90))).events == ()
    assert await store.buffer_renew("a", until=B0 + timedelta(seconds=120)) == 1
    assert (await store.buffer_claim(u, "b", now=B0 + timedelta(seconds=90),
                                     until=B0 + timedelta(seconds=150))).events == ()
    taken = await store.buffer_claim(u, "b", now=B0 + timedelta(seconds=121),
                                     until=B0 + timedelta(seconds=181))
    assert [e.id for e in taken.events] == ["e1"]
    assert await store.buffer_renew("a", until=B0 + timedelta(days=1)) == 0


async def test_a_commit_removes_its_claim_and_a_lost_claim_stores_nothing(store: Store) -> None:
    u = user()
    await store.buffer_add([(ev("e1", u), 1), (ev("e2", u), 1)], now=B0)
    stale = await store.buffer_claim(u, "slow", now=B0, until=B0 + timedelta(seconds=1))
    late = B0 + timedelta(seconds=5)
    live = await store.buffer_claim(u, "fast", now=late, until=late + timedelta(seconds=60))
    with pytest.raises(BufferClaimLostError):
        await store.commit(UserModel(user_id=u), expected_version=0, changes=[],
                           events=list(stale.events), processed_ids=["e1", "e2"], claim=stale)
    assert await store.processed(u, ["e1", "e2"]) == set()
    assert (await store.load(u)).version == 0
    await store.commit(UserModel(user_id=u), expected_version=0, changes=[],
                       events=list(live.events), processed_ids=["e1", "e2"], claim=live)
    assert await store.processed(u, ["e1", "e2"]) == {"e1", "e2"}
    assert [s for s in await store.buffer_summaries(now=late, high_signal_types=set())
            if s.user_id == u] == []


async def test_deleting_a_user_empties_their_buffer(store: Store) -> None:
    u, other = user(), user()
    await store.buffer_add([(ev("e1", u), 1), (ev("e1", other), 1)], now=B0)
    await store.delete_user(u)
    users = {s.user_id for s in await store.buffer_summaries(now=B0, high_signal_types=set())}
    assert u not in users and other in users
    assert (await store.buffer_claim(u, "t", now=B0, until=B0)).events == ()


async def test_causal_links_and_profile_events_round_trip(store: Store) -> None:
    """Links live in the goal's record (its JSON row); the events their evidence cites and
    the profile events (identify, outcomes) are kept and read back."""
    from doxa.engine import Engine

    u = user()
    engine = Engine(store=store, clock=lambda: NOW)
    await engine.identify(u, {"plan": "pro"}, id="t1", at=NOW)
    [goal] = await engine.observe(u, "goal", "Wants to launch the pilot", id="g", at=NOW)
    [why] = await engine.observe(u, "motivation", "Needs to prove ROI", id="m", at=NOW)
    await engine.link(u, "g", "because", "m", id="l", at=NOW)
    await engine.record_user_outcome(u, "converted", id="o", at=NOW)
    loaded = await store.load(u)
    [link] = loaded.get(goal.record_id).active_links()
    assert (link.relation, link.target_id, link.evidence[0].event_id) == (
        "because", why.record_id, "l")
    assert {"g", "m", "l"} <= set(loaded.events)
    profile = await engine.profile(u)
    assert (profile.traits, set(profile.outcomes)) == ({"plan": "pro"}, {"converted"})
