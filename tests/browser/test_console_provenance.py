"""The console shows what a file's content credentials say beside the verdict: a real
browser, a real server, files signed in the test (tests/c2pafiles.py)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests import c2pafiles as c2
from tests.browser.test_console import console, sign_in, upload  # noqa: F401 (a fixture)


def test_an_ai_generated_declaration_is_shown_beside_the_models_verdict(
    console: Page,  # noqa: F811
    tmp_path: Path,
    screenshots: Path,
) -> None:
    signed = tmp_path / "generated.jpg"
    signed.write_bytes(c2.sign(c2.photo(512, 384, seed=1), definition=c2.manifest(c2.AI_GENERATED)))
    sign_in(console)
    upload(console, signed)
    card = console.locator(".result").first
    expect(card.locator(".band")).to_have_attribute("data-verdict", "fake")
    expect(card.locator(".reasons")).to_contain_text("declared_ai_generated")
    credentials = card.get_by_role("region", name="Content credentials")
    expect(credentials).to_be_visible()
    expect(credentials).to_contain_text("signer is not on this deployment's trust list")
    expect(credentials).to_contain_text("trainedAlgorithmicMedia")
    expect(credentials).to_contain_text("Example Camera Co, Test Camera")
    expect(credentials).to_contain_text("veracity-tests 1.0")
    console.screenshot(path=screenshots / "provenance.png", full_page=True)


def test_credentials_broken_after_signing_are_shown_invalid(
    console: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    signed = c2.sign(c2.photo(512, 384, seed=2))
    edited = tmp_path / "edited.jpg"
    edited.write_bytes(c2.with_app11(c2.photo(512, 384, seed=3), c2.app11(signed)))
    sign_in(console)
    upload(console, edited)
    card = console.locator(".result").first
    credentials = card.get_by_role("region", name="Content credentials")
    expect(credentials).to_contain_text("Invalid")
    expect(credentials).to_contain_text("assertion.dataHash.mismatch")
    expect(card.locator(".reasons")).to_contain_text("provenance_invalid")
    expect(card.locator(".band")).not_to_have_attribute("data-verdict", "real")
