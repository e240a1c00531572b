"""Redaction runs before any text reaches the LLM: e-mails, phones and card numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2
import pytest

from doxa.engine import Engine
from doxa.events.redaction import default_redactor
from doxa.llm.providers import build_client, parse_provider


@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane.doe+work@acme.co.uk please", "mail me at [email] please"),
    ("call +1 415-555-0134 after 5", "call [phone] after 5"),
    ("my card 4111 1111 1111 1111 was charged", "my card [card] was charged"),
    ("order 1234567890123 shipped", "order 1234567890123 shipped"),  # fails Luhn: kept
    ("we have 40 seats and 3 teams", "we have 40 seats and 3 teams"),
])
def test_default_redactor(text: str, expected: str) -> None:
    assert default_redactor(text) == expected


async def test_no_personal_data_reaches_the_provider_or_the_store() -> None:
    bodies: list[bytes] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.content)
        return httpx2.Response(401, json={"error": {"message": "stop here"}})

    client = build_client(parse_provider("openai/gpt-4o-mini"), api_key="k",
                          http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(answer)))
    engine = Engine(store="memory://", client=client)
    with pytest.raises(Exception):  # noqa: B017 - the 401 stops the ingest; the body is what counts
        await engine.ingest("u1", [{"id": "e1", "type": "chat_message",
                                    "timestamp": datetime(2026, 3, 2, tzinfo=UTC),
                                    "text": "Reach me at jane@acme.io or 020 7946 0958"}])
    sent = bodies[0].decode()
    assert "jane@acme.io" not in sent and "7946" not in sent
    assert "[email]" in sent and "[phone]" in sent
