"""The console's static files as the app serves them: a strict CSP (no inline script), cache headers that
let a browser keep the versioned files and revalidate the page, and `wellpulse up` naming its address."""

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from cli.up import _print_banner
from config import Settings
from serve.app import build_app
from serve.console import CONSOLE_CSP, STATIC, assets

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = build_app(Settings(data_dir=tmp_path_factory.mktemp("console")))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


async def test_the_page_forbids_inline_scripts_and_is_revalidated(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == CONSOLE_CSP
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
    again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # Every script is a file of ours: no inline <script>, no CDN, no inline handler or style.
    scripts = re.findall(r"<script\b[^>]*>", page.text)
    assert scripts and all(f'src="/console/{assets().version}/' in s for s in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=|https?://", page.text)


async def test_versioned_files_are_cached_for_good_and_old_versions_are_gone(client: httpx.AsyncClient) -> None:
    version = assets().version
    script = await client.get(f"/console/{version}/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.headers["content-security-policy"] == CONSOLE_CSP
    units = await client.get(f"/console/{version}/units.js")  # made from schema/equipment.py
    assert units.status_code == 200 and '"casing_psi": {"high": 400.0, "low": 150.0, "unit": "psi"}' in units.text
    style = await client.get(f"/console/{version}/console.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    for path in ("/console/0000000000000000/app.js", f"/console/{version}/nothing.js",
                 f"/console/{version}/%2e%2e/__init__.py"):
        gone = await client.get(path)
        assert gone.status_code == 404, path
        assert gone.json()["error"]["message"], gone.text  # the error envelope
    api = await client.get("/openapi.json")
    assert "script-src" not in api.headers.get("content-security-policy", "")  # the API keeps its own policy


def test_the_scripts_load_nothing_from_elsewhere() -> None:
    for path in Path(STATIC).rglob("*.js"):
        text = path.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path  # no CDN, no third party
        assert "innerHTML" not in text and "eval(" not in text, path  # elements are built, never parsed


def test_wellpulse_up_prints_the_console_address(capsys: pytest.CaptureFixture[str]) -> None:
    settings = SimpleNamespace(host="127.0.0.1", port=8000, nats_url=None)
    _print_banner(SimpleNamespace(settings=settings, migration=None, base_url="http://127.0.0.1:8000"),
                  demo_login=None)
    assert re.search(r"^  console +http://127\.0\.0\.1:8000/ ", capsys.readouterr().out, re.MULTILINE)
