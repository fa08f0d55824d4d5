"""The console's files and the key endpoint it signs in with (the page itself is tested in a
real browser, tests/browser)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN_KEY, API_KEY, assert_error, make_settings, serving
from veracity.api.console import CONTENT_SECURITY_POLICY, static_dir


def test_keys_me_names_the_key_and_its_role(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, admin_api_keys=ADMIN_KEY)) as client:
        plain = client.get("/keys/me", headers={"X-API-Key": API_KEY}).json()
        admin = client.get("/keys/me", headers={"X-API-Key": ADMIN_KEY}).json()
        assert plain["admin"] is False
        assert admin["admin"] is True
        assert plain["key_id"]
        assert plain["key_id"] != admin["key_id"]
        assert API_KEY not in str(plain)
        assert_error(client.get("/keys/me", headers={"X-API-Key": "wrong"}), 401, "unauthorized")


def test_the_console_and_its_assets_are_served_with_the_page_policy(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for asset in re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console"
    assert client.get("/console/assets/../../settings.py").status_code == 404


def test_the_console_files_load_nothing_from_elsewhere_and_run_no_inline_script() -> None:
    for path in Path(static_dir()).iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names another host"
        assert "innerHTML" not in text, path.name
        assert "insertAdjacentHTML" not in text, path.name
        if path.suffix == ".html":
            # Every <script> has a src; no on* attribute handlers; no style attributes.
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path.name
            assert not re.search(r"\son[a-z]+=", text), path.name
            assert " style=" not in text, path.name


def test_the_console_can_be_turned_off(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, console_enabled=False)) as client:
        assert client.get("/console").status_code == 404
        assert client.get("/console/assets/console.js").status_code == 404
