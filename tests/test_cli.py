"""The CLI as a new user meets it (issue 13): each test names a rough edge it keeps fixed."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from doxa.cli.main import app
from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.model.records import UserModel
from doxa.testing.fake_provider import FakeProvider

BRACKETS = ("[/bold]", "a[red]b", "[link=http://x]y[/link]")
MARKUP_TEXT = "I want [/bold] and a[red]b and [link=http://x]y[/link] today"


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


async def acli(*args: str) -> Result:
    """The CLI runs its own event loop: invoke it off the test's loop."""
    return await asyncio.to_thread(cli, *args)


def chat(event_id: str, text: str, *, user: str = "u1", day: int = 1) -> dict[str, object]:
    return {"id": event_id, "user_id": user, "type": "chat_message",
            "timestamp": f"2026-03-{day:02d}T10:00:00Z", "text": text}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    try:
        yield provider
    finally:
        await provider.stop()


async def ingest_into(db: Path, fake: FakeProvider, user: str,
                      events: list[dict[str, object]]) -> Engine:
    engine = Engine(model="openai/fake", base_url=fake.base_url, api_key="test",
                    store=f"sqlite:///{db}")
    try:
        await engine.ingest(user, events)
    finally:
        await engine.close()
    return engine


async def stored_model(db: Path, user: str) -> UserModel:
    engine = Engine(store=f"sqlite:///{db}")
    try:
        return await engine.model(user)
    finally:
        await engine.close()


# -- 1. user text is never rich markup ------------------------------------------------------


async def test_square_brackets_print_verbatim_in_every_command(
        fake: FakeProvider, tmp_path: Path) -> None:
    db = tmp_path / "doxa.db"
    await ingest_into(db, fake, "u1", [chat("e1", MARKUP_TEXT)])
    shown = await acli("show", "u1", "--db", str(db))
    assert shown.exit_code == 0, shown.output
    model = await stored_model(db, "u1")
    record_id = model.records[0].id
    outputs = [shown,
               await acli("explain", "u1", record_id, "--db", str(db)),
               await acli("history", "u1", "--db", str(db))]
    for out in outputs:
        assert out.exit_code == 0, out.output
        flat = "".join(out.output.split())  # tables fold long cells across lines
        for text in BRACKETS:
            assert "".join(text.split()) in flat, (text, out.output)
        assert "\x1b]8;" not in out.output  # no terminal hyperlink


def test_square_brackets_in_arguments_and_errors_print_verbatim() -> None:
    for user in BRACKETS:
        out = cli("explain", user, "rec_nope", "--db", "memory://")
        assert out.exit_code == 1
        assert user in out.output, out.output


def test_schema_name_rule_prints_whole(tmp_path: Path) -> None:
    bad = tmp_path / "schema.yaml"
    bad.write_text("version: 1\ndimensions:\n  - name: Bad Name\n    description: x\n"
                   "    kinds: [belief]\n", encoding="utf-8")
    out = cli("schema", "check", str(bad))
    assert out.exit_code == 1
    assert "^[a-z][a-z0-9_]{1,39}$" in out.output, out.output


# -- 2. fail fast without a key, and say what to do ------------------------------------------


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", [["ingest"], ["backfill"], ["backfill", "--batch-api"]])
def test_a_command_that_needs_a_model_fails_before_reading_or_creating(
        no_key: Path, command: list[str]) -> None:
    events = no_key / "events.jsonl"
    events.write_text("this line is not JSON\n", encoding="utf-8")
    out = cli(*command, str(events), "--model", "openai/gpt-4o-mini")
    assert out.exit_code == 1
    assert not (no_key / "doxa.db").exists()
    assert "line 1" not in out.output  # the file was not read
    for way in ("OPENAI_API_KEY", "--model ollama/<model>", "--base-url", "doxa demo"):
        assert way in out.output, out.output
    assert "base_url=" not in out.output


def test_worker_fails_before_creating_a_store(no_key: Path) -> None:
    out = cli("worker", "--model", "openai/gpt-4o-mini", "--drain")
    assert out.exit_code == 1
    assert "OPENAI_API_KEY" in out.output and "doxa demo" in out.output
    assert not (no_key / "doxa.db").exists()


def test_serve_fails_before_creating_a_store(no_key: Path) -> None:
    pytest.importorskip("fastapi")
    out = cli("serve", "--model", "anthropic/claude-haiku-4-5")
    assert out.exit_code == 1
    assert "ANTHROPIC_API_KEY" in out.output and "doxa demo" in out.output
    assert not (no_key / "doxa.db").exists()


async def test_the_python_api_names_python_arguments(no_key: Path) -> None:
    from doxa.errors import MissingCredentialsError

    engine = Engine(store="memory://")
    with pytest.raises(MissingCredentialsError) as caught:
        await engine.ingest("u1", [chat("e1", "I want to plan a long trip to Japan")])
    assert "base_url=" in str(caught.value) and "api_key=" in str(caught.value)
    assert "--" not in str(caught.value)


# -- 5. read commands refuse a store that does not exist --------------------------------------


@pytest.mark.parametrize("command", [
    ["show", "u1"], ["explain", "u1", "r1"], ["history", "u1"], ["users"], ["trajectories"],
    ["export", "u1"], ["outcome", "u1", "r1", "engaged"], ["delete", "u1", "--yes"],
    ["buffers"],
])
def test_read_commands_refuse_a_store_that_does_not_exist(
        tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    out = cli(*command, "--db", f"sqlite:///{missing}")
    assert out.exit_code == 1, out.output
    assert str(missing) in out.output and "--db" in out.output
    assert not missing.parent.exists()


# -- 6. outcomes are idempotent without --event-id ---------------------------------------------


async def test_outcome_without_event_id_is_idempotent(fake: FakeProvider, tmp_path: Path) -> None:
    db = tmp_path / "doxa.db"
    await ingest_into(db, fake, "u1", [chat("e1", "I want to plan a long trip to Japan")])
    record_id = (await stored_model(db, "u1")).records[0].id
    first = await acli("outcome", "u1", record_id, "engaged", "--db", str(db))
    assert first.exit_code == 0 and "confidence" in first.output, first.output
    again = await acli("outcome", "u1", record_id, "engaged", "--db", str(db))
    assert again.exit_code == 0 and "already recorded" in again.output, again.output
    as_json = json.loads((await acli("outcome", "u1", record_id, "engaged", "--db", str(db),
                                     "--json")).output)
    assert as_json == {"already_recorded": True, "changes": []}
    [record] = (await stored_model(db, "u1")).records
    assert len([e for e in record.evidence if e.basis == "outcome"]) == 1


# -- 10. one empty-result style, time order, ranges, flags, --version -------------------------


async def test_empty_results_are_said_the_same_way(tmp_path: Path, fake: FakeProvider) -> None:
    db = tmp_path / "doxa.db"
    await ingest_into(db, fake, "u1", [chat("e1", "ok", user="u1")])  # no record, a store
    for command, what in ((["show", "u2"], "No records for user u2"),
                          (["show", "u2", "--dimensions"], "No dimension values for user u2"),
                          (["history", "u2"], "No history for user u2"),
                          (["users", "--tenant", "acme"], "No users of tenant acme"),
                          (["trajectories"], "No goal records")):
        out = await acli(*command, "--db", str(db))
        assert out.exit_code == 0 and out.output.strip() == f"{what} in {db}.", out.output
    for command, empty in ((["show", "u2", "--dimensions"], []), (["history", "u2"], {}),
                           (["users", "--tenant", "acme"], [])):
        out = await acli(*command, "--db", str(db), "--json")
        assert json.loads(out.output) == empty


async def test_history_is_in_time_order(fake: FakeProvider, tmp_path: Path) -> None:
    db = tmp_path / "doxa.db"
    # Ingested newest first, so record ids do not follow time.
    for day, text in ((20, "I want a zebra themed holiday next year"),
                      (3, "I want an aardvark themed party this month")):
        await ingest_into(db, fake, "u1", [chat(f"e{day}", text, day=day)])
    out = await acli("history", "u1", "--db", str(db), "--json")
    times = [revs[0]["recorded_at"] for revs in json.loads(out.output).values()]
    assert len(times) == 2 and times == sorted(times)
    table = (await acli("history", "u1", "--db", str(db))).output
    assert table.index("zebra") < table.index("aardvark")  # recorded first, shown first


def test_value_ranges_are_checked_naming_the_flag(tmp_path: Path) -> None:
    out = cli("show", "u1", "--db", "memory://", "--min-confidence", "5")
    assert out.exit_code == 2 and "--min-confidence" in out.output


def test_an_empty_events_file_says_so_and_creates_nothing(no_key: Path) -> None:
    events = no_key / "events.jsonl"
    events.write_text("\n", encoding="utf-8")
    out = cli("ingest", str(events), "--model", "ollama/llama3.1")
    assert out.exit_code == 0
    assert f"{events} holds no events: nothing to ingest" in out.output
    assert not (no_key / "doxa.db").exists()


@pytest.mark.parametrize("command", [["show"], ["ingest"], ["users"], ["backfill"], ["serve"]])
def test_flags_read_as_flags_in_help(command: list[str]) -> None:
    out = cli(*command, "--help")
    assert out.exit_code == 0
    flag_lines = [line for line in out.output.splitlines()
                  if any(f in line for f in ("--json", "--all", "--skip-invalid",
                                              "--print-openapi"))]
    assert flag_lines and not any("<bool>" in line for line in flag_lines), out.output


def test_version() -> None:
    from doxa import __version__

    out = cli("--version")
    assert out.exit_code == 0 and out.output == f"doxa {__version__}\n"


# -- 12. server users are tenant/user: --tenant finds them ------------------------------------


async def test_tenant_option_finds_what_the_server_stored(
        fake: FakeProvider, tmp_path: Path) -> None:
    db = tmp_path / "doxa.db"
    with tenant_scoped_user_ids():  # writing as the server does, into tenant acme
        await ingest_into(db, fake, "acme/u-42", [chat("e1", "I want to plan a long trip to "
                                                       "Japan", user="acme/u-42")])
    missed = await acli("show", "u-42", "--db", str(db))
    assert "No records for user u-42" in missed.stdout
    assert "add --tenant acme" in missed.stderr
    shown = await acli("show", "u-42", "--tenant", "acme", "--db", str(db), "--json")
    assert json.loads(shown.output)["records"], shown.output
    assert json.loads((await acli("users", "--tenant", "acme", "--db", str(db),
                                  "--json")).output) == ["u-42"]
    assert "acme/u-42" in (await acli("users", "--db", str(db))).output
    record_id = json.loads(shown.output)["records"][0]["id"]
    fed = await acli("outcome", "u-42", record_id, "engaged", "--tenant", "acme",
                     "--db", str(db), "--json")
    assert fed.exit_code == 0, fed.output
    assert json.loads(fed.output)["changes"][0]["record_id"] == record_id


# -- 4. one key-minting command: the printed key is the one that authenticates ----------------


def test_new_key_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    from doxa.server.auth import load_keys

    keys = tmp_path / "doxa-keys"
    out = CliRunner().invoke(app, ["serve", "--new-key", "acme", "--keys", str(keys)])
    assert out.exit_code == 0, out.output
    key = out.stdout.strip()
    assert key.startswith("doxa_") and "\n" not in key
    assert key not in keys.read_text(encoding="utf-8")
    assert (keys.stat().st_mode & 0o777) == 0o600
    second = CliRunner().invoke(app, ["serve", "--new-key", "acme", "--keys", str(keys)])
    ring = load_keys(keys, {})
    for minted in (key, second.stdout.strip()):
        principal = ring.authenticate(minted)
        assert principal is not None and principal.tenant == "acme"


def test_documented_recipes_mint_one_key() -> None:
    """The README once piped a second `--new-key` into the keys file: the key a user had
    copied from the first one got 401. Every documented use must mint once."""
    root = Path(__file__).parents[1]
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    recipes = [line for page in pages if page.exists()
               for line in page.read_text(encoding="utf-8").splitlines()
               if "serve --new-key" in line and not line.lstrip().startswith("#")]
    for line in recipes:
        assert not re.search(r"--new-key\s+\S+\s*\|", line), line


# -- 3. ingest --schema works against the fake provider ---------------------------------------


async def test_ingest_with_a_schema_against_the_fake_provider(
        fake: FakeProvider, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(chat(f"e{i}", text, day=i + 1)) for i, text in
                                enumerate(["We need it to sync with Salesforce and HubSpot",
                                           "The plan must pay back within a year"])) + "\n",
                      encoding="utf-8")
    schema = Path(__file__).parents[1] / "fixtures" / "schemas" / "b2b_saas.yaml"
    db = tmp_path / "doxa.db"
    out = await acli("ingest", str(events), "--schema", str(schema), "--db", str(db),
                     "--model", "openai/fake", "--base-url", fake.base_url, "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)["users"]["u1"]
    assert result["dropped"] == [] and result["changes"], result
    model = await stored_model(db, "u1")
    assert {r.dimension for r in model.records} == {"integration_needs"}


async def test_ingest_says_how_many_reasks_and_evidence_repairs_it_made(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.answer = lambda body: {"notes": "", "records": [{
        "kind": "preference", "statement": "Prefers short written guides", "context": "learning",
        "basis": "explicit", "evidence": [{"event_id": "e0", "quote": "i PREFER short guides"}]}]}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(chat("e0", "I prefer short guides, not videos")) + "\n",
                      encoding="utf-8")
    out = await acli("ingest", str(events), "--db", str(tmp_path / "doxa.db"),
                     "--model", "openai/fake", "--base-url", fake.base_url)
    assert out.exit_code == 0, out.output
    assert "1 LLM call(s) (0 re-ask(s); 1 evidence repair(s) instead)" in out.output


# -- 7. every problem of an event, in the CLI ---------------------------------------------------


def test_ingest_names_every_problem_of_a_line(no_key: Path) -> None:
    events = no_key / "events.jsonl"
    events.write_text(json.dumps({"id": "e1", "type": "", "timestamp": "2026-03-01T10:00"})
                      + "\n", encoding="utf-8")
    out = cli("ingest", str(events), "--model", "ollama/llama3.1")
    assert out.exit_code == 1
    flat = " ".join(out.output.split())
    for said in ("line 1", "field 'user_id'", "--user", "field 'type'", "time zone"):
        assert said in flat, out.output
    assert not (no_key / "doxa.db").exists()


# -- 10. an unreachable PostgreSQL is one clear error --------------------------------------------


def test_an_unreachable_postgresql_is_one_error_at_once(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("psycopg_pool")
    started = time.monotonic()
    out = cli("users", "--db", "postgresql://doxa:s3cret@127.0.0.1:1/doxa")
    assert out.exit_code == 1
    assert out.output.count("cannot reach the PostgreSQL store") == 1, out.output
    assert "s3cret" not in out.output and "doxa:***@127.0.0.1" in out.output
    assert not [r for r in caplog.records if "error connecting" in r.getMessage()]
    assert time.monotonic() - started < 10
