"""Browser tests: Playwright (pytest-playwright) drives Debian's Chromium at /usr/bin/chromium
against a real server process.

Playwright's own browser download cannot work on this project's machines, so the browser is
the system one, installed by `make browser` (which `make test` runs). Chromium's own
background traffic (component updates, sync, safe browsing) is switched off: the tests
assert that no request leaves 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SYNTHETIC_CHECKPOINT
from tests.integration.conftest import API_KEY, Server, serve_until_done, start_server
from veracity.receipts import generate_key

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_KEY = "console-admin-key-0123456789"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]

if not CHROMIUM.exists():
    # On CI `make test` installs it first, so a missing browser there is a failure.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser`")
    pytest.skip(f"{CHROMIUM} is missing (run `make browser`)", allow_module_level=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(autouse=True)
def _only_loopback(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every request a test's page makes stays on 127.0.0.1 (or is a blob:/data: URL of
    the page's own): the console loads nothing from anywhere else."""
    if "page" not in request.fixturenames:
        yield
        return
    page = request.getfixturevalue("page")
    requests: list[str] = []
    page.on("request", lambda sent: requests.append(sent.url))
    yield
    foreign = [
        url for url in requests if not url.startswith(("http://127.0.0.1:", "blob:", "data:"))
    ]
    assert foreign == [], f"the page made requests beyond this machine: {foreign}"


@pytest.fixture(scope="session")
def base_url() -> None:
    # pytest-playwright's stand-in for pytest-base-url is a method fixture that this pytest
    # deprecates (an error under the suite's warning policy); pages here go to full URLs.
    return None


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("console")
    signing_key, _ = generate_key(tmp / "receipts" / "signing.pem")
    server = start_server(
        tmp,
        SYNTHETIC_CHECKPOINT,
        VERACITY_ADMIN_API_KEYS=ADMIN_KEY,
        VERACITY_RECEIPT_SIGNING_KEY=str(signing_key),
        VERACITY_DATABASE_URL=f"sqlite:///{tmp / 'store.db'}",
    )
    yield from serve_until_done(server)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests save a screenshot of each page: $VERACITY_SCREENSHOTS, or a fresh
    temporary folder (the README's two come from `make console-screenshots`)."""
    folder = os.environ.get("VERACITY_SCREENSHOTS")
    path = Path(folder) if folder else Path(os.environ.get("TMPDIR", "/tmp")) / "veracity-shots"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["ADMIN_KEY", "API_KEY"]
