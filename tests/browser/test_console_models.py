"""The console's admin view against a real server with a model repository: the models and
their versions as GET /models has them, and lifecycle actions behind a confirmation."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import jpeg_bytes
from tests.browser.conftest import ADMIN_KEY, API_KEY
from tests.browser.test_console import assert_no_serious_violations, sign_in
from tests.integration.conftest import Server, serve_repository


@pytest.fixture(scope="module")
def repo_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint) -> Iterator[Server]:
    yield from serve_repository(tmp_path_factory, tiny_checkpoint, ADMIN_KEY)


def serving(server: Server) -> str:
    model = httpx.get(f"{server.base_url}/models/tiny", headers={"X-API-Key": API_KEY}).json()
    return str(model["serving_version"])


def test_only_an_admin_sees_the_models(page: Page, repo_server: Server) -> None:
    page.goto(f"{repo_server.base_url}/console")
    sign_in(page, API_KEY)
    expect(page.get_by_role("button", name="Models")).to_be_hidden()


def test_an_admin_promotes_and_rolls_back_behind_a_confirmation(
    page: Page, repo_server: Server, screenshots
) -> None:
    page.goto(f"{repo_server.base_url}/console")
    sign_in(page, ADMIN_KEY)
    page.get_by_role("button", name="Models").click()
    tiny = page.locator('article[data-model="tiny"]')
    # The newest version serves; an empty version directory is invalid, says why, and
    # offers no action.
    expect(tiny.locator('tr[data-version="2"] td').nth(2)).to_have_text("serving")
    empty = tiny.locator('tr[data-version="empty"]')
    expect(empty.locator(".state")).to_contain_text("invalid")
    expect(empty.locator(".reason")).not_to_be_empty()
    expect(empty.get_by_role("button")).to_have_count(0)
    assert_no_serious_violations(page)
    page.screenshot(path=screenshots / "models.png", full_page=True)

    # Cancelled: nothing changes.
    promote = tiny.get_by_role("button", name="Promote tiny version 1")
    promote.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Send all of tiny's traffic to version 1?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert serving(repo_server) == "2"

    # Confirmed: version 1 serves, and the table says so.
    promote.click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(tiny.locator('tr[data-version="1"] td').nth(2)).to_contain_text("serving")
    assert serving(repo_server) == "1"

    page.get_by_role("button", name="Roll back to 2").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(tiny.locator('tr[data-version="2"] td').nth(2)).to_contain_text("serving")
    assert serving(repo_server) == "2"

    # A version whose weights are corrupt fails to load: the service's message is shown,
    # and nothing changes.
    tiny.get_by_role("button", name="Promote tiny version broken").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("#models-message")).to_contain_text("HTTP")
    assert serving(repo_server) == "2"
    expect(tiny.locator('tr[data-version="broken"] .state')).to_contain_text("failed")


def test_an_admin_sets_a_shadow_and_sees_its_agreement(page: Page, repo_server: Server) -> None:
    page.goto(f"{repo_server.base_url}/console")
    sign_in(page, ADMIN_KEY)
    page.get_by_role("button", name="Models").click()
    tiny = page.locator('article[data-model="tiny"]')
    tiny.get_by_label("Shadow version").select_option("1")
    tiny.get_by_role("button", name="Set traffic").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(tiny).to_contain_text("Shadow1: agreed 0")
    # Whatever each request's outcome, the tally counts each of them once.
    for seed in range(3):
        response = httpx.post(
            f"{repo_server.base_url}/infer",
            files={"file": ("x.jpg", jpeg_bytes(seed=300 + seed))},
            headers={"X-API-Key": API_KEY},
            timeout=60,
        )
        assert response.status_code == 200, response.text

    def counted() -> int:
        tally = httpx.get(
            f"{repo_server.base_url}/models/tiny", headers={"X-API-Key": API_KEY}
        ).json()["shadow_agreement"]
        return int(tally["agree"] + tally["disagree"] + tally["dropped"])

    deadline = 50
    while counted() < 3 and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    page.get_by_role("button", name="Models").click()
    tally = httpx.get(f"{repo_server.base_url}/models/tiny", headers={"X-API-Key": API_KEY}).json()[
        "shadow_agreement"
    ]
    expect(tiny).to_contain_text(
        f"agreed {tally['agree']}, disagreed {tally['disagree']}, not scored {tally['dropped']}"
    )
    assert counted() == 3


def test_the_replicas_are_listed_and_a_change_from_a_stale_page_is_refused(
    page: Page, repo_server: Server
) -> None:
    page.goto(f"{repo_server.base_url}/console")
    sign_in(page, ADMIN_KEY)
    page.get_by_role("button", name="Models").click()
    catalog = httpx.get(f"{repo_server.base_url}/models", headers={"X-API-Key": API_KEY}).json()
    replicas = page.locator("#replicas")
    expect(
        page.get_by_role("heading", name=f"Replicas: revision {catalog['revision']}")
    ).to_be_visible()
    me = replicas.locator(f'tr[data-replica="{catalog["replica_id"]}"]')
    expect(me.locator("td").nth(1)).to_have_text("current")
    expect(me.locator("td").nth(2)).to_have_text(str(catalog["revision"]))
    expect(me.locator("td").nth(3)).to_contain_text(f"tiny {serving(repo_server)}")
    assert_no_serious_violations(page)

    # Another admin changes the models while this page is open: version 1 shadows.
    assert serving(repo_server) == "2"
    admin = {"X-API-Key": ADMIN_KEY}

    def traffic(shadow: str | None) -> None:
        response = httpx.put(
            f"{repo_server.base_url}/admin/models/tiny/traffic",
            json={"shadow_version": shadow},
            headers=admin,
            timeout=60,
        )
        assert response.status_code == 200, response.text

    traffic("1")
    # This page's promotion was decided on the old revision: refused, nothing changes, and
    # the page now shows the models as they stand.
    tiny = page.locator('article[data-model="tiny"]')
    tiny.get_by_role("button", name="Promote tiny version 1").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("#models-message")).to_contain_text("409")
    assert serving(repo_server) == "2"
    expect(
        page.get_by_role("heading", name=f"Replicas: revision {catalog['revision'] + 1}")
    ).to_be_visible()
    expect(tiny).to_contain_text("Shadow1: agreed")
    # From the fresh page the same change goes through.
    tiny.get_by_role("button", name="Promote tiny version 1").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(tiny.locator('tr[data-version="1"] td').nth(2)).to_contain_text("serving")
    assert serving(repo_server) == "1"
    # As the module's other tests expect it.
    promoted = httpx.post(
        f"{repo_server.base_url}/admin/models/tiny/promote", json={"version": "2"}, headers=admin
    )
    assert promoted.status_code == 200, promoted.text
    traffic(None)
