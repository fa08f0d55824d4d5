"""A video longer than one request may hold goes through /jobs/video from the console, and
the job's card survives a reload of the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY
from tests.browser.test_console import sign_in
from tests.conftest import SYNTHETIC_CHECKPOINT
from tests.integration.conftest import Server, serve_until_done, start_server
from veracity.video.samples import SampleVideoSpec, write_sample_video


@pytest.fixture(scope="module")
def short_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Synchronous requests hold at most 3 s of video; jobs keep their own, larger limit.
    server = start_server(
        tmp_path_factory.mktemp("jobs-console"),
        SYNTHETIC_CHECKPOINT,
        VERACITY_VIDEO_MAX_DURATION_S="3",
    )
    yield from serve_until_done(server)


def test_a_long_video_becomes_a_job_whose_card_survives_a_reload(
    page: Page, short_limit_server: Server, tmp_path: Path
) -> None:
    video = tmp_path / "long.mp4"
    spec = SampleVideoSpec(seconds=6.0, fps=5, size=(384, 256), manipulated=(2.0, 4.0))
    write_sample_video(video, seed=3, spec=spec)
    page.goto(f"{short_limit_server.base_url}/console")
    sign_in(page)
    page.get_by_label("Files to analyse").set_input_files(video)
    card = page.locator(".result").first
    expect(card.locator(".band")).to_have_attribute("data-verdict", "fake", timeout=90_000)
    job_url = card.get_attribute("data-job")
    assert job_url is not None
    assert job_url.startswith("/jobs/")
    job = httpx.get(f"{short_limit_server.base_url}{job_url}", headers={"X-API-Key": API_KEY})
    assert job.json()["status"] == "done"
    expect(card.locator(".timeline .chart")).to_be_visible()

    # A reload finds the job again and shows its answer (the file itself is gone: no player).
    page.reload()
    card = page.locator(f'.result[data-job="{job_url}"]')
    expect(card.locator(".band")).to_have_attribute("data-verdict", "fake", timeout=30_000)
    expect(card.locator(".name")).to_have_text("long.mp4")
    expect(card.locator(".segments button").first).to_contain_text("sustained")
    expect(card.locator(".timeline video")).to_be_hidden()
