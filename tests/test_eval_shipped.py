"""Shipped eval caches (`evals/cache/*.jsonl`): exported from a run's cache dir, they answer
a run in a new, empty cache dir with no call to the model and the same scores."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from builders import write_suite
from doxa.cli.eval import EXIT_ERROR, EXIT_OK, app
from doxa.errors import InvalidCacheFileError
from doxa.eval.runfile import read_run
from doxa.eval.shipped import CacheEntry, read_cache_file, seed, write_cache_file
from doxa.store.sqlite import SqliteStore
from doxa.testing.fake_provider import FakeProvider, serving_in_thread

runner = CliRunner()


def event(eid: str, minute: int, text: str) -> dict[str, Any]:
    return {"id": eid, "type": "chat_message", "timestamp": f"2026-03-02T10:{minute:02d}:00Z",
            "text": text}


# The fake answers "Said: <first eight words>" for every event with 4+ words of text.
CASES = {
    "saas/cfo.json": {
        "id": "cfo", "user_id": "u-cfo",
        "batches": [[event("e1", 0, "I need to show my CFO this pays back within 6 months")],
                    [event("e2", 9, "We plan to add forty seats after the pilot ends")]],
        "expected": [{"kind": "goal", "statement": "Said: I need to show my CFO this pays",
                      "evidence": ["e1"]}],
    },
    "everyday/dark.json": {
        "id": "dark", "user_id": "u-dark",
        "batches": [[event("d1", 1, "I prefer dark mode in every app I use")]],
        "expected": [{"kind": "preference",
                      "statement": "Said: I prefer dark mode in every app I",
                      "evidence": ["d1"]}],
    },
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "suite", CASES)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with serving_in_thread(FakeProvider()) as provider:
        yield provider


def run(suite: Path, fake: FakeProvider, out: Path, cache_dir: Path, *extra: str) -> Any:
    result = runner.invoke(app, ["run", str(suite), "--model", "openai/fake", "--base-url",
                                 fake.base_url, "--out", str(out), "--cache-dir",
                                 str(cache_dir), *extra])
    return result


def export(cache_dir: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(app, ["export-cache", "--cache-dir", str(cache_dir), "--out", str(out),
                               *extra])


def cached_rows(db: Path) -> list[tuple[str, str, str]]:
    async def rows() -> list[tuple[str, str, str]]:
        store = SqliteStore(db)
        try:
            return [row async for row in store.cache_entries()]
        finally:
            await store.close()
    return asyncio.run(rows())


def test_a_shipped_cache_answers_a_fresh_cache_dir_with_no_call(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    """doxa's run and the naive baseline's fill one cache dir; the export answers both
    again from a new, empty cache dir: no request reaches the model, the scores are equal."""
    first = tmp_path / "first-cache"
    for name, extra in (("doxa", ()), ("naive", ("--baseline", "naive"))):
        result = run(suite, fake, tmp_path / f"{name}-1.json", first, "--shipped-cache", "",
                     *extra)
        assert result.exit_code == EXIT_OK, result.output
    asked = fake.stats.requests
    assert asked == 5  # doxa: three batches with signal; naive: one call per case

    shipped = tmp_path / "shipped" / "fake.jsonl"
    result = export(first, shipped, "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["answers"] == 5
    lines = [json.loads(line) for line in shipped.read_text().splitlines()]
    assert [(d["key"], d["user_id"], d["value"]) for d in lines] == cached_rows(
        first / "eval.db")
    assert [d["key"] for d in lines] == sorted(d["key"] for d in lines)
    assert {d["key"][:2] for d in lines} == {"x_", "n_"}  # doxa's and the baseline's
    assert list(lines[0]) == ["key", "user_id", "value"]

    fresh, said = tmp_path / "fresh-cache", []
    for name, extra in (("doxa", ()), ("naive", ("--baseline", "naive"))):
        result = run(suite, fake, tmp_path / f"{name}-2.json", fresh, "--shipped-cache",
                     str(shipped.parent), *extra)
        assert result.exit_code == EXIT_OK, result.output
        said.append(" ".join(result.output.split()))
        before, again = read_run(tmp_path / f"{name}-1.json"), read_run(
            tmp_path / f"{name}-2.json")
        assert again.usage.llm_calls == 0
        assert again.usage.cache_hits == before.usage.llm_calls > 0
        assert again.metrics == before.metrics
        assert [c.predicted for c in again.cases] == [c.predicted for c in before.cases]
    assert fake.stats.requests == asked
    # The first run seeds all five answers; the second finds them there already.
    assert f"shipped cache {shipped.parent}: 5 answer(s) in 1 file(s), 5 new to " in said[0]
    assert "5 answer(s) in 1 file(s), 0 new to " in said[1]


def test_evals_cache_is_read_by_default_from_the_current_folder(
        suite: Path, fake: FakeProvider, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # first, so the checkout's own evals/cache is not read
    assert run(suite, fake, tmp_path / "one.json", tmp_path / "one").exit_code == EXIT_OK
    asked = fake.stats.requests
    assert export(tmp_path / "one", tmp_path / "evals" / "cache" / "x.jsonl").exit_code == 0
    result = run(suite, fake, tmp_path / "two.json", tmp_path / "two", "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["shipped_cache"] == {
        "folder": "evals/cache", "files": 1, "answers": 3, "added": 3}
    assert read_run(tmp_path / "two.json").usage.llm_calls == 0
    assert fake.stats.requests == asked
    oracle = runner.invoke(app, ["run", str(suite), "--oracle", "--out", "o.json",
                                 "--cache-dir", "three"])
    assert oracle.exit_code == EXIT_OK and "shipped cache" not in oracle.output
    assert not (tmp_path / "three").exists()  # no model asked: nothing to seed


@pytest.mark.parametrize("off", [["--no-cache"], ["--shipped-cache", ""]])
def test_no_cache_and_an_empty_folder_ignore_shipped_answers(
        suite: Path, fake: FakeProvider, tmp_path: Path, off: list[str]) -> None:
    assert run(suite, fake, tmp_path / "one.json", tmp_path / "one").exit_code == EXIT_OK
    shipped = tmp_path / "shipped"
    assert export(tmp_path / "one", shipped / "x.jsonl").exit_code == EXIT_OK
    asked = fake.stats.requests
    result = run(suite, fake, tmp_path / "two.json", tmp_path / "two",
                 *(["--shipped-cache", str(shipped)] if off == ["--no-cache"] else []), *off)
    assert result.exit_code == EXIT_OK, result.output
    assert "shipped cache" not in result.output
    assert read_run(tmp_path / "two.json").usage.cache_hits == 0
    assert fake.stats.requests == asked * 2
    if off == ["--no-cache"]:  # not even seeded: the local cache is never made
        assert not (tmp_path / "two" / "eval.db").exists()


@pytest.mark.parametrize(("line", "problem"), [
    ('{"key": "x_2", "user_id": "u"', "not JSON"),
    ('["x_2", "u", "{}"]', 'expected an object {"key", "user_id", "value"}'),
    ('{"key": "x_2", "user_id": "u"}', "field 'value': Field required"),
    ('{"key": "x_2", "user_id": "u", "value": {"records": []}}',
     "field 'value': Input should be a valid string"),
    ('{"key": "x_2", "user_id": "u", "value": "{}", "at": 1}', "field 'at'"),
    ('{"key": "x_1", "user_id": "u", "value": "{}"}', "key x_1 appears twice"),
])
def test_a_malformed_line_is_an_error_naming_file_and_line(
        suite: Path, fake: FakeProvider, tmp_path: Path, line: str, problem: str) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    bad = shipped / "b.jsonl"
    bad.write_text('{"key": "x_1", "user_id": "u", "value": "{}"}\n\n' + line + "\n")
    with pytest.raises(InvalidCacheFileError) as caught:
        read_cache_file(bad)
    assert (caught.value.path, caught.value.line) == (str(bad), 3)
    assert str(caught.value).startswith(f"{bad}:3: ")

    result = run(suite, fake, tmp_path / "r.json", tmp_path / "cache", "--shipped-cache",
                 str(shipped))
    assert result.exit_code == EXIT_ERROR
    message = " ".join(result.output.split())
    assert f"{bad}:3:" in message and problem in message
    assert fake.stats.requests == 0 and not (tmp_path / "cache" / "eval.db").exists()


def test_a_missing_shipped_folder_or_cache_dir_is_an_error(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    result = run(suite, fake, tmp_path / "r.json", tmp_path / "c", "--shipped-cache",
                 str(tmp_path / "nope"))
    assert result.exit_code == EXIT_ERROR
    assert f"shipped cache folder {tmp_path / 'nope'} does not exist" in " ".join(
        result.output.split())
    result = export(tmp_path / "empty", tmp_path / "x.jsonl")
    assert result.exit_code == EXIT_ERROR
    assert f"{tmp_path / 'empty' / 'eval.db'} does not exist" in " ".join(result.output.split())
    assert not (tmp_path / "empty").exists() and not (tmp_path / "x.jsonl").exists()
    assert fake.stats.requests == 0


def test_seeding_never_overwrites_a_local_answer(tmp_path: Path) -> None:
    async def go() -> tuple[int, str | None, str | None]:
        store = SqliteStore(tmp_path / "eval.db")
        try:
            await store.cache_put("x_1", "u", "mine")
            added = await seed(store, [CacheEntry(key="x_1", user_id="u", value="shipped"),
                                       CacheEntry(key="x_2", user_id="v", value="new")])
            return added, await store.cache_get("x_1"), await store.cache_get("x_2")
        finally:
            await store.close()
    assert asyncio.run(go()) == (1, "mine", "new")


def test_an_export_that_fails_leaves_the_old_file_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "shipped" / "x.jsonl"
    write_cache_file(out, [CacheEntry(key="x_0", user_id="u", value="old")])
    old = out.read_bytes()

    async def fill() -> None:
        store = SqliteStore(cache / "eval.db")
        for n in range(5):
            await store.cache_put(f"x_{n}", "u", f"v{n}")
        await store.close()
    asyncio.run(fill())

    async def broken(self: SqliteStore, *, page: int = 500) -> AsyncIterator[tuple[str, ...]]:
        yield ("x_1", "u", "v1")
        raise OSError("disk gone")

    with monkeypatch.context() as patch:
        patch.setattr(SqliteStore, "cache_entries", broken)
        result = export(cache, out)
    assert result.exit_code != EXIT_OK
    assert out.read_bytes() == old and os.listdir(out.parent) == ["x.jsonl"]

    def full_disk(*args: Any) -> None:
        raise OSError("no space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="no space"):
            write_cache_file(out, [CacheEntry(key="x_9", user_id="u", value="new")])
    assert out.read_bytes() == old and os.listdir(out.parent) == ["x.jsonl"]

    assert export(cache, out).exit_code == EXIT_OK
    assert [json.loads(line)["value"] for line in out.read_text().splitlines()] == [
        f"v{n}" for n in range(5)]


def test_cache_entries_pages_in_key_order(tmp_path: Path) -> None:
    async def go() -> list[tuple[str, str, str]]:
        store = SqliteStore(tmp_path / "eval.db")
        try:
            for n in (3, 0, 4, 1, 2):
                await store.cache_put(f"k{n}", f"u{n}", f"v{n}")
            return [row async for row in store.cache_entries(page=2)]
        finally:
            await store.close()
    assert asyncio.run(go()) == [(f"k{n}", f"u{n}", f"v{n}") for n in range(5)]


def test_a_shipped_file_round_trips_answers_with_unicode_line_separators(
        tmp_path: Path) -> None:
    entries = [CacheEntry(key=f"x_{n}", user_id="u\u2028v", value=text)
               for n, text in enumerate(['{"s": "a\u2028b"}', '{"s": "c\x85d\\n"}', "é"])]
    path = tmp_path / "x.jsonl"
    assert write_cache_file(path, reversed(entries)) == 3
    assert read_cache_file(path) == entries
    assert path.read_text().count("\n") == 3


@pytest.mark.parametrize("baseline", [(), ("--baseline", "naive")], ids=["doxa", "naive"])
def test_a_cached_answer_reports_what_it_cost_when_first_asked(
        suite: Path, fake: FakeProvider, tmp_path: Path, baseline: tuple[str, ...]) -> None:
    """Cached answers make no call, and their calls and tokens are reported beside, not
    shown as zero: a re-scored run still says what its answers cost."""
    cache = tmp_path / "cache"
    first = run(suite, fake, tmp_path / "first.json", cache, "--shipped-cache", "", *baseline)
    assert first.exit_code == EXIT_OK, first.output
    again = run(suite, fake, tmp_path / "again.json", cache, "--shipped-cache", "", *baseline)
    assert again.exit_code == EXIT_OK, again.output
    asked, replayed = (read_run(tmp_path / "first.json").usage,
                       read_run(tmp_path / "again.json").usage)
    assert asked.llm_calls > 0 and asked.input_tokens > 0
    assert (replayed.llm_calls, replayed.input_tokens) == (0, 0)
    assert replayed.cache_hits == (asked.calling_batches or 0) + (asked.cache_hits or 0)
    assert replayed.cached_calls == asked.llm_calls
    assert (replayed.cached_input_tokens, replayed.cached_output_tokens) == (
        asked.input_tokens, asked.output_tokens)
    assert "when first asked" in again.output
