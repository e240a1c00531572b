"""The served OpenAPI document: committed, and fuzzed by schemathesis without a server error.

Regenerate the committed document after changing the API:

    .venv/bin/doxa serve --print-openapi > docs/openapi.json
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.server.app import create_app, openapi_document
from doxa.server.auth import KeyRing
from doxa.testing.fake_provider import FakeProvider

COMMITTED = Path(__file__).parent.parent / "docs" / "openapi.json"
KEY = "schemathesis-key-0123456789"
REGENERATE = "doxa serve --print-openapi > docs/openapi.json"
SEED = [{"id": f"s{i}", "type": "chat_message", "timestamp": f"2026-03-0{i + 1}T10:00:00Z",
         "text": text} for i, text in enumerate([
             "We need SSO before the security review",
             "Please keep replies short and in bullets",
             "I think the reporting module is too expensive"])]


def test_the_committed_openapi_document_is_what_the_app_serves() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == openapi_document(), (
        f"docs/openapi.json is out of date; regenerate it: {REGENERATE}")


def test_print_openapi_writes_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from doxa.cli.main import app

    printed = CliRunner().invoke(app, ["serve", "--print-openapi"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == openapi_document()


class ProviderThread:
    """The fake provider on its own event loop thread, for code that is not async."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.provider = FakeProvider()

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.provider.start(), self.loop).result(10)
        return self.provider

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.provider.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    with ProviderThread() as provider:
        engine = Engine(model="openai/fake", store="memory://", base_url=provider.base_url,
                        api_key="x", retry=RetryPolicy(attempts=1),
                        settings=ExtractionSettings(reasks=0))
        ring = KeyRing()
        ring.add_key("fuzz", KEY)
        # The document's example user exists, so reads of it serialise real records. (A
        # second engine on the same store seeds it: the app's own client stays on its loop.)
        seeder = Engine(model="openai/fake", store=engine.store, base_url=provider.base_url,
                        api_key="x")
        with tenant_scoped_user_ids():  # writing as the server does, into tenant fuzz
            asyncio.run(seeder.ingest("fuzz/u-42", SEED))
        yield create_app(engine, ring)


# Generated from the committed document (the test above keeps it equal to the served one).
schema = schemathesis.openapi.from_dict(json.loads(COMMITTED.read_text(encoding="utf-8")))


@schema.parametrize()
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_request_the_document_allows_makes_a_server_error(case: Any, app: Any) -> None:
    # Valid and invalid requests alike must get a documented status and body, never a 5xx
    # (the fake provider answers every ingest, so 502/503 would be a fault too).
    case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {KEY}"},
        checks=[checks.not_a_server_error, checks.status_code_conformance,
                checks.content_type_conformance, checks.response_schema_conformance])
