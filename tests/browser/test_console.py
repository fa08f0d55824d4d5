"""The reviewer console in a real browser, against a real server: signing in, an upload read
as a person reads it, the explanation overlay, a review, the history, and what the page
must never do (run a note as script, load anything from another host, fail axe-core)."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.conftest import ADMIN_KEY, API_KEY
from tests.integration.conftest import Server
from veracity.sampledata import SampleDataSpec, generate_sample_data
from veracity.video.samples import SampleVideoSpec, write_sample_video

SCRIPT_NOTE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("photos")
    spec = SampleDataSpec(train_per_class=0, val_per_class=2, image_size=256)
    generate_sample_data(root, seed=11, spec=spec)
    return sorted((root / "val").rglob("*.*"))


@pytest.fixture
def console(page: Page, console_server: Server) -> Page:
    """The console's page on the shared server (conftest holds every request it makes to
    this machine)."""
    page.goto(f"{console_server.base_url}/console")
    return page


def sign_in(page: Page, key: str = API_KEY) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Analyse media")).to_be_visible()


def upload(page: Page, path: Path) -> None:
    page.get_by_label("Files to analyse").set_input_files(path)
    expect(page.locator(".result .band-word").first).to_be_visible(timeout=60_000)


def assert_no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [
        violation
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == [], results.generate_report()


def test_the_page_is_served_with_a_strict_policy(console_server: Server) -> None:
    response = httpx.get(f"{console_server.base_url}/console")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    # The API's own answers keep the plain policy.
    assert (
        httpx.get(f"{console_server.base_url}/health").headers["content-security-policy"]
        == "frame-ancestors 'none'"
    )


def test_a_wrong_key_gets_a_plain_message(console: Page, screenshots: Path) -> None:
    console.get_by_label("API key").fill("not-a-key")
    console.get_by_role("button", name="Sign in").click()
    expect(console.get_by_role("alert").first).to_have_text(re.compile("not accepted"))
    expect(console.get_by_role("heading", name="Analyse media")).to_be_hidden()
    # The key is in no URL and no cookie.
    assert "not-a-key" not in console.url
    assert console.context.cookies() == []
    assert_no_serious_violations(console)
    console.screenshot(path=screenshots / "sign-in.png", full_page=True)


def test_the_key_stays_in_the_tab_and_an_admin_is_told_so(console: Page) -> None:
    sign_in(console, ADMIN_KEY)
    expect(console.get_by_text("admin", exact=True)).to_be_visible()
    stored = console.evaluate("sessionStorage.getItem('veracity.apiKey')")
    assert stored == ADMIN_KEY
    assert console.evaluate("localStorage.length") == 0
    assert console.context.cookies() == []
    # A reload keeps the session; signing out forgets the key.
    console.reload()
    expect(console.get_by_role("heading", name="Analyse media")).to_be_visible()
    console.get_by_role("button", name="Sign out").click()
    expect(console.get_by_label("API key")).to_be_visible()
    assert console.evaluate("sessionStorage.getItem('veracity.apiKey')") is None


def test_an_upload_is_read_as_a_person_reads_it(
    console: Page, console_server: Server, photos: list[Path], screenshots: Path
) -> None:
    sign_in(console)
    photo = photos[0]
    upload(console, photo)
    card = console.locator(".result").first
    expect(card.locator(".name")).to_have_text(photo.name)
    # The same file through the API: the page shows that answer.
    answer = httpx.post(
        f"{console_server.base_url}/infer",
        params={"explain": "true"},
        files={"file": (photo.name, photo.read_bytes())},
        headers={"X-API-Key": API_KEY},
        timeout=60,
    ).json()
    band = card.locator(".band")
    expect(band).to_have_attribute("data-verdict", answer["verdict"])
    word = {"real": "Real", "fake": "Fake", "inconclusive": "Inconclusive"}[answer["verdict"]]
    expect(card.locator(".band-word")).to_contain_text(word)
    expect(card.locator(".prob")).to_contain_text(f"P(fake) {answer['fake_prob']:.2f}")
    for reason in answer["reasons"]:
        expect(card.locator(".reasons")).to_contain_text(reason["message"])
        expect(card.locator(".reasons")).to_contain_text(f"What to do: {reason['action']}")
    expect(card.locator(".facts")).to_contain_text(answer["model_version"])
    expect(card.locator(".facts")).to_contain_text("256 \N{MULTIPLICATION SIGN} 256")

    # Where: the model's own grid drawn over the image, one painted cell per grid cell.
    grid = answer["explanation"]["grid"]
    canvas = card.locator(".where canvas")
    expect(canvas).to_be_visible()
    expect(canvas).to_have_attribute("data-cells", str(len(grid) * len(grid[0])))
    painted = canvas.evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)"
    )
    assert painted
    card.get_by_label("Overlay opacity").fill("20")
    assert canvas.evaluate("c => c.style.opacity") == "0.2"
    card.get_by_label("Show where the model looked").uncheck()
    expect(canvas).to_be_hidden()
    card.get_by_label("Show where the model looked").check()
    expect(canvas).to_have_attribute("data-method", "patch_probabilities")
    assert_no_serious_violations(console)
    console.screenshot(path=screenshots / "verdict.png", full_page=True)

    # The second method, on request: Grad-CAM's finer grid over the same image.
    card.get_by_role("button", name="Explain with Grad-CAM").click()
    expect(canvas).to_have_attribute("data-method", "grad_cam", timeout=60_000)
    expect(canvas).to_have_attribute("data-cells", "256")
    expect(card.locator(".method")).to_contain_text("Grad-CAM")
    expect(card.get_by_role("button", name="Explain with Grad-CAM")).to_be_hidden()


def test_a_review_is_saved_and_a_script_in_its_note_stays_text(
    console: Page, console_server: Server, photos: list[Path], screenshots: Path
) -> None:
    sign_in(console)
    upload(console, photos[1])
    card = console.locator(".result").first
    card.get_by_label("Note").fill(SCRIPT_NOTE)
    card.get_by_role("button", name="Fake", exact=True).click()
    expect(card.get_by_role("status")).to_have_text(f"Reviewed fake: {SCRIPT_NOTE}")
    assert console.evaluate("window.pwned") is None
    assert card.locator("script").count() == 0

    # The history shows the review; its detail shows the note, as text again.
    console.get_by_role("button", name="History").click()
    row = console.locator("#history-table tbody tr").first
    expect(row).to_contain_text("fake")
    row.get_by_role("link").click()
    detail = console.locator("#detail .result")
    expect(detail.get_by_role("status")).to_have_text(f"Reviewed fake: {SCRIPT_NOTE}")
    assert console.evaluate("window.pwned") is None
    assert_no_serious_violations(console)
    console.screenshot(path=screenshots / "history.png", full_page=True)

    stored = httpx.get(
        f"{console_server.base_url}/predictions",
        params={"limit": 1},
        headers={"X-API-Key": API_KEY},
    ).json()["items"][0]
    assert stored["review"] == {**stored["review"], "label": "fake", "note": SCRIPT_NOTE}


def test_the_history_filters_by_verdict(
    console: Page, console_server: Server, photos: list[Path]
) -> None:
    sign_in(console)
    for photo in photos[:3]:
        upload(console, photo)
    expect(console.locator(".result .band-word")).to_have_count(3, timeout=60_000)
    verdicts = {
        item["verdict"]
        for item in httpx.get(
            f"{console_server.base_url}/predictions",
            headers={"X-API-Key": API_KEY},
        ).json()["items"]
    }
    console.get_by_role("button", name="History").click()
    for verdict in sorted(verdicts):
        console.get_by_label("Verdict").select_option(verdict)
        console.get_by_role("button", name="Filter").click()
        cells = console.locator("#history-table tbody td.verdict")
        expect(cells.first).to_be_visible()
        assert set(cells.all_inner_texts()) == {verdict}
    absent = {"real", "fake", "inconclusive"} - verdicts
    for verdict in sorted(absent):
        console.get_by_label("Verdict").select_option(verdict)
        console.get_by_role("button", name="Filter").click()
        expect(console.get_by_text("No predictions match.")).to_be_visible()


def test_a_video_chart_shows_the_manipulated_stretch_and_seeks_the_player(
    console: Page, tmp_path: Path, screenshots: Path
) -> None:
    video = tmp_path / "manipulated.mp4"
    spec = SampleVideoSpec(seconds=6.0, fps=5, size=(384, 256), manipulated=(2.0, 4.0))
    write_sample_video(video, seed=3, spec=spec)
    sign_in(console)
    upload(console, video)
    card = console.locator(".result").first
    expect(card.locator(".band")).to_have_attribute("data-verdict", "fake")
    chart = card.locator(".timeline .chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9][0-9]*$"))
    # The sustained stretch is named, and a click on it seeks the player to its start.
    segment = card.locator(".segments button").first
    expect(segment).to_contain_text("sustained")
    start = float(segment.inner_text().split("\N{EN DASH}")[0])
    assert 1.5 <= start <= 2.5
    player = card.locator("video")
    segment.click()
    assert player.evaluate("v => v.currentTime") == pytest.approx(start, abs=0.05)
    # A click in the middle of the chart seeks to the frame nearest the middle (3 s).
    box = chart.bounding_box()
    assert box is not None
    middle = (40 + (720 - 50) * 0.5) / 720 * box["width"]
    chart.click(position={"x": middle, "y": box["height"] / 2})
    assert player.evaluate("v => v.currentTime") == pytest.approx(3.0, abs=0.5)
    assert_no_serious_violations(console)
    console.screenshot(path=screenshots / "video.png", full_page=True)


def test_a_receipt_is_verified_and_a_tampered_one_refused(
    console: Page, console_server: Server, photos: list[Path], screenshots: Path
) -> None:
    photo, other = photos[2], photos[3]
    receipt = httpx.post(
        f"{console_server.base_url}/infer",
        files={"file": (photo.name, photo.read_bytes())},
        headers={"X-API-Key": API_KEY},
        timeout=60,
    ).json()["receipt"]
    sign_in(console)
    console.get_by_role("button", name="Verify a receipt").click()
    outcome = console.locator("#receipt-result")

    def verify(text: str, file: Path) -> None:
        console.get_by_label("Receipt", exact=True).fill(text)
        console.get_by_label("File the receipt is about").set_input_files(file)
        console.get_by_role("button", name="Verify", exact=True).click()

    verify(receipt, photo)
    expect(outcome).to_have_attribute("data-outcome", "signed-same-file")
    expect(outcome).to_have_text("Signed by this deployment, and about this file.")
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    expect(console.locator("#receipt-claims")).to_contain_text(digest)
    assert_no_serious_violations(console)
    console.screenshot(path=screenshots / "receipt.png", full_page=True)
    verify(receipt, other)
    expect(outcome).to_have_attribute("data-outcome", "signed-other-file")
    # One character of the signature changed: not this deployment's signature any more.
    head, payload, signature = receipt.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    verify(f"{head}.{payload}.{flipped}", photo)
    expect(outcome).to_have_attribute("data-outcome", "refused")
    expect(outcome).to_contain_text("Not a receipt this deployment signed")


def test_the_review_queue_holds_unreviewed_inconclusive_answers_oldest_first(
    console: Page, console_server: Server
) -> None:
    # Thumbnails: the model does not judge them (low_resolution), so they are inconclusive.
    ids = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        thumbnail = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="PNG")
        answer = httpx.post(
            f"{console_server.base_url}/infer",
            files={"file": (f"thumb{seed}.png", buffer.getvalue())},
            headers={"X-API-Key": API_KEY},
            timeout=60,
        ).json()
        assert answer["verdict"] == "inconclusive"
        ids.append(answer["prediction_id"])
    # A thumbnail's reason says what to do about it, on the page as in the answer.
    actions = {reason["code"]: reason["action"] for reason in answer["reasons"]}
    assert actions["low_resolution"].startswith("Send the original")
    reviewed = httpx.post(
        f"{console_server.base_url}/predictions/{ids[0]}/feedback",
        json={"label": "real"},
        headers={"X-API-Key": API_KEY},
    )
    assert reviewed.status_code == 200
    sign_in(console)
    console.get_by_role("button", name="History").click()
    console.get_by_role("button", name="Review queue").click()
    rows = console.locator("#history-table tbody tr")
    expect(rows.first).to_be_visible()
    queue = rows.evaluate_all("rows => rows.map(row => row.dataset.predictionId)")
    assert ids[0] not in queue
    assert queue.index(ids[1]) < queue.index(ids[2])
    assert set(console.locator("#history-table tbody td.verdict").all_inner_texts()) == {
        "inconclusive"
    }
    # Reviewed from the queue, it leaves the queue.
    console.locator(f'tr[data-prediction-id="{ids[1]}"]').get_by_role("link").click()
    expect(console.locator("#detail .reasons")).to_contain_text("What to do: Send the original")
    console.locator("#detail").get_by_role("button", name="Real", exact=True).click()
    expect(console.locator("#detail").get_by_role("status")).to_have_text("Reviewed real")
    console.get_by_role("button", name="Review queue").click()
    expect(console.locator(f'tr[data-prediction-id="{ids[2]}"]')).to_be_visible()
    expect(console.locator(f'tr[data-prediction-id="{ids[1]}"]')).to_have_count(0)


def test_a_copy_seen_before_links_to_the_reviewed_original(
    console: Page, console_server: Server, photos: list[Path], tmp_path: Path
) -> None:
    original = photos[0]
    first = httpx.post(
        f"{console_server.base_url}/infer",
        files={"file": (original.name, original.read_bytes())},
        headers={"X-API-Key": API_KEY},
        timeout=60,
    ).json()
    httpx.post(
        f"{console_server.base_url}/predictions/{first['prediction_id']}/feedback",
        json={"label": "fake", "note": "checked by hand"},
        headers={"X-API-Key": API_KEY},
    ).raise_for_status()
    copy = tmp_path / "copy.jpg"
    with Image.open(original) as picture:
        picture.convert("RGB").save(copy, format="JPEG", quality=70)
    sign_in(console)
    upload(console, copy)
    card = console.locator(".result").first
    seen = card.locator(".seen")
    expect(seen).to_be_visible()
    match = seen.locator("li").filter(has_text="reviewed fake").first
    expect(match).to_be_visible()
    match.get_by_role("link").click()
    # The link opens the original's detail, with its review.
    detail = console.locator("#detail .result")
    expect(detail.locator(".name")).to_contain_text(first["prediction_id"])
    expect(detail.get_by_role("status")).to_have_text("Reviewed fake: checked by hand")
