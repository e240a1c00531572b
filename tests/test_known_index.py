"""The word index behind the prompt's known-records slice ranks exactly as a full scan; it is
a view kept with the model and handed on to the versions merged from it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from doxa.model.records import EvidenceLink, Record, UserModel

VOCABULARY = ["sso", "okta", "billing", "annual", "roi", "cfo", "payback", "slack", "jira",
              "export", "dashboard", "mobile", "seats", "pricing"]
AT = datetime(2026, 1, 1, tzinfo=UTC)


def words_of(record: Record) -> frozenset[str]:
    return frozenset(record.statement.split()) | {record.context}


def is_active(record: Record) -> bool:
    return record.status == "active"


def ranked(model: UserModel, words: set[str], count: int) -> list[Record]:
    return model.views.ranked(model.records, words, count, words_of=words_of, keep=is_active)


def full_scan(model: UserModel, words: set[str], count: int) -> list[str]:
    """The ranking the index replaces: every active record scored one by one."""
    keyed = sorted((-len(words_of(r) & words), -r.confidence, r.id)
                   for r in model.records if r.status == "active")
    return [rid for *_, rid in keyed[:count]]


def record(rng: random.Random, rid: str) -> Record:
    statement = " ".join(rng.sample(VOCABULARY, rng.randint(1, 4)))
    return Record(id=rid, user_id="u1", kind=rng.choice(["belief", "goal"]),
                  statement=statement, context=rng.choice(["billing", "x", "sso"]),
                  confidence=rng.choice([0.3, 0.5, 0.5, 0.7]),
                  status=rng.choice(["active", "active", "active", "superseded"]),
                  valid_from=AT, created_at=AT, updated_at=AT,
                  evidence=(EvidenceLink(event_id=f"e-{rid}", observed_at=AT),))


def test_ranking_matches_a_full_scan_as_the_model_changes_version_by_version() -> None:
    """Records are replaced, added, retired and re-ranked over 60 versions; at every version
    the index (updated by difference) and a full scan agree, ties and all."""
    rng = random.Random(7)
    records = {f"r{i:03d}": record(rng, f"r{i:03d}") for i in range(40)}
    model = UserModel(user_id="u1")
    for version in range(60):
        for rid in rng.sample(sorted(records), 5):  # changed: a new object for the same id
            records[rid] = record(rng, rid)
        for _ in range(2):
            rid = f"r{len(records):03d}"
            records[rid] = record(rng, rid)
        if version % 7 == 0:
            del records[rng.choice(sorted(records))]
        model = model.with_records(records.values())  # the next version, as merge makes it
        words = set(rng.sample(VOCABULARY, rng.randint(0, 5)))
        count = rng.choice([4, 12, 48, 200])
        assert [r.id for r in ranked(model, words, count)] == full_scan(
            model, words, count), f"version {version}"


def test_an_older_model_of_the_same_user_is_ranked_from_its_own_records() -> None:
    rng = random.Random(3)
    old = UserModel(user_id="u1", records=tuple(record(rng, f"r{i}") for i in range(10)))
    new = old.with_records([*old.records[:5], *(record(rng, f"n{i}") for i in range(5))])
    words = {"sso", "billing"}
    for model in (old, new, old):
        assert [r.id for r in ranked(model, words, 8)] == full_scan(model, words, 8)


def test_a_word_every_record_holds_is_skipped_without_changing_the_order() -> None:
    rng = random.Random(11)
    records = []
    for i in range(30):
        base = record(rng, f"r{i:02d}")
        records.append(base.model_copy(update={"statement": base.statement + " rollout"}))
    model = UserModel(user_id="u2", records=tuple(records))
    for words in ({"rollout"}, {"rollout", "sso"}, {"rollout", "billing", "cfo"}):
        for count in (4, 48):
            assert [r.id for r in ranked(model, words, count)] == full_scan(
                model, words, count)


def test_the_index_is_handed_on_to_the_next_version_and_never_compares_or_travels() -> None:
    """A version made from another shares its views (the index moves forward by
    difference); a model built anew, copied deeply or unpickled starts with its own, and
    views never make two models with the same records unequal."""
    import copy
    import pickle

    rng = random.Random(5)
    old = UserModel(user_id="u1", records=tuple(record(rng, f"r{i}") for i in range(6)))
    assert ranked(old, {"sso"}, 3) == ranked(old, {"sso"}, 3)
    new = old.with_records([*old.records[:3], record(rng, "n0")])
    assert new.views is old.views
    assert [r.id for r in ranked(new, {"sso"}, 4)] == full_scan(new, {"sso"}, 4)
    rebuilt = UserModel(user_id="u1", records=new.records)
    assert rebuilt.views is not new.views and rebuilt == new
    for other in (copy.deepcopy(new), pickle.loads(pickle.dumps(new))):
        assert other.views is not new.views and other == new
        assert [r.id for r in ranked(other, {"sso"}, 4)] == full_scan(new, {"sso"}, 4)
