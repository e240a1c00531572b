"""/docs and /redoc work offline: Swagger UI and ReDoc come from the installed package."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("fastapi_offline")
import httpx

from doxa.engine import Engine
from doxa.server.app import create_app
from doxa.server.auth import KeyRing

ASSET = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    engine = Engine(store="memory://")
    app = create_app(engine, KeyRing())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://doxa") as c:
        yield c
    await engine.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_explorers_load_only_local_assets(
        client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = ASSET.findall(html.text)
    assert urls, html.text
    assert not [u for u in urls if "://" in u or u.startswith("//")], urls
    assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
    for url in urls:
        served = await client.get(url)
        assert served.status_code == 200, url
        assert len(served.content) > 100, url  # a real asset, not an empty stand-in
