"""Content credentials beside the verdict, over HTTP: files signed in the test with the CAI's
Builder and a throwaway certificate chain (tests/c2pafiles.py), read by the service's
worker processes, and how they meet the model's verdict (README, "Provenance")."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests import c2pafiles as c2
from tests.api.conftest import API_KEY, assert_still_serving, infer, make_settings, serving
from tests.api.test_jobs import wait_for
from tests.videofiles import write_video
from veracity.cli import main
from veracity.receipts import generate_key, load_public_keys, verify_receipt

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key, _ = generate_key(tmp_path_factory.mktemp("receipts") / "receipts.pem")
    return key


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path, signing_key: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tiny_checkpoint, max_upload_mb=8, receipt_signing_key=signing_key, cache_enabled=False
    )
    with serving(settings) as client:
        yield client


def judged(client: TestClient, data: bytes, name: str = "x.jpg") -> dict:
    response = infer(client, data, name=name)
    assert response.status_code == 200, response.text
    return response.json()


def codes(answer: dict) -> list[str]:
    return [reason["code"] for reason in answer["reasons"]]


def test_a_file_without_credentials_says_so_and_keeps_the_models_verdict(client) -> None:
    answer = judged(client, c2.photo(seed=1))
    assert answer["provenance"]["present"] is False
    assert answer["provenance"]["state"] is None
    assert answer["model_verdict"] == answer["verdict"]


def test_a_valid_ai_generated_declaration_makes_the_verdict_fake(client, signing_key) -> None:
    data = c2.sign(c2.photo(seed=2), definition=c2.manifest(c2.AI_GENERATED))
    answer = judged(client, data)
    provenance = answer["provenance"]
    assert provenance["present"] is True
    assert provenance["state"] == "valid_untrusted"  # no trust list configured
    assert provenance["digital_source_type"] == "trainedAlgorithmicMedia"
    assert provenance["signer"] == {
        "organization": "Example Camera Co",
        "common_name": "Test Camera",
    }
    assert provenance["claim_generator"] == "veracity-tests 1.0"
    assert provenance["actions"] == ["c2pa.created"]
    assert answer["verdict"] == "fake"
    assert "declared_ai_generated" in codes(answer)
    (reason,) = [r for r in answer["reasons"] if r["code"] == "declared_ai_generated"]
    assert "Example Camera Co" in reason["message"]
    assert reason["action"]
    # The model's own reading stays visible, and its probability is untouched.
    assert answer["model_verdict"] in ("real", "fake", "inconclusive")
    assert answer["fake_prob"] + answer["real_prob"] == pytest.approx(1.0)
    # Stored as answered, and signed into the receipt.
    stored = client.get(f"/predictions/{answer['prediction_id']}", headers=HEADERS).json()
    assert stored["verdict"] == "fake"
    assert "declared_ai_generated" in stored["reasons"]
    assert stored["result"]["provenance"] == provenance
    assert stored["result"]["model_verdict"] == answer["model_verdict"]
    keys = load_public_keys(signing_key.with_suffix(".pub.pem"))
    claims = verify_receipt(answer["receipt"], keys)
    assert claims["verdict"] == "fake"
    assert claims["model_verdict"] == answer["model_verdict"]
    assert claims["provenance"]["state"] == "valid_untrusted"
    assert claims["provenance"]["digital_source_type"] == "trainedAlgorithmicMedia"


def test_a_camera_declaration_is_reported_and_leaves_the_models_verdict(client) -> None:
    answer = judged(client, c2.sign(c2.photo(seed=3), definition=c2.manifest(c2.CAMERA)))
    assert answer["provenance"]["state"] == "valid_untrusted"
    assert answer["provenance"]["digital_source_type"] == "digitalCapture"
    assert answer["verdict"] == answer["model_verdict"]
    assert not {"declared_ai_generated", "provenance_invalid"} & set(codes(answer))


def test_a_file_edited_after_signing_is_provenance_invalid(client) -> None:
    signed = c2.sign(c2.photo(seed=4), definition=c2.manifest(c2.CAMERA))
    # Other pixels under the same credentials, as an editor that keeps metadata leaves them.
    edited = c2.with_app11(c2.photo(seed=5), c2.app11(signed))
    answer = judged(client, edited)
    assert answer["provenance"]["state"] == "invalid"
    assert "assertion.dataHash.mismatch" in answer["provenance"]["codes"]
    assert "provenance_invalid" in codes(answer)
    assert answer["verdict"] != "real"
    if answer["model_verdict"] == "real":
        assert answer["verdict"] == "inconclusive"


def test_an_invalid_credential_declaring_ai_is_not_believed(client) -> None:
    signed = c2.sign(c2.photo(seed=6), definition=c2.manifest(c2.AI_GENERATED))
    answer = judged(client, c2.with_app11(c2.photo(seed=7), c2.app11(signed)))
    assert answer["provenance"]["state"] == "invalid"
    assert "declared_ai_generated" not in codes(answer)
    assert "provenance_invalid" in codes(answer)


def test_a_trust_list_moves_valid_untrusted_to_valid(tiny_checkpoint, tmp_path) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(c2.authority().root_pem)
    stranger = c2.authority("Unknown Signer Ltd", "Somebody")
    settings = make_settings(tiny_checkpoint, provenance_trust_anchors=str(anchors))
    with serving(settings) as client:
        trusted = judged(client, c2.sign(c2.photo(seed=8)))
        untrusted = judged(client, c2.sign(c2.photo(seed=8), by=stranger))
    assert trusted["provenance"]["state"] == "valid"
    assert untrusted["provenance"]["state"] == "valid_untrusted"
    assert "signingCredential.untrusted" in untrusted["provenance"]["codes"]
    assert untrusted["provenance"]["signer"]["organization"] == "Unknown Signer Ltd"


def test_a_batch_reads_each_items_credentials(client) -> None:
    files = [
        (
            "files",
            (
                "ai.jpg",
                c2.sign(c2.photo(seed=9), definition=c2.manifest(c2.AI_GENERATED)),
                "image/jpeg",
            ),
        ),
        ("files", ("plain.jpg", c2.photo(seed=10), "image/jpeg")),
    ]
    response = client.post("/infer/batch", files=files, headers=HEADERS)
    assert response.status_code == 200, response.text
    first, second = (item["result"] for item in response.json()["items"])
    assert first["verdict"] == "fake"
    assert "declared_ai_generated" in codes(first)
    assert second["provenance"]["present"] is False


def test_a_videos_credentials_are_read(client) -> None:
    clip = c2.sign(
        write_video(), "video/mp4", definition=c2.manifest(c2.AI_GENERATED, media_type="video/mp4")
    )
    response = client.post(
        "/infer/video", files={"file": ("clip.mp4", clip, "video/mp4")}, headers=HEADERS
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provenance"]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert answer["verdict"] == "fake"
    assert "declared_ai_generated" in codes(answer)


HOSTILE = {
    "malformed": lambda: c2.malformed(c2.photo(seed=11)),
    "truncated": lambda: c2.truncated(c2.sign(c2.photo(seed=12))),
    "claims_another_format": lambda: c2.foreign_store(c2.photo(seed=13)),
    "many_assertions": lambda: c2.sign(c2.photo(seed=14), definition=c2.manifest(assertions=2000)),
    "deep_ingredients": lambda: c2.deep(c2.photo(seed=15), 12),
    "huge_thumbnail": lambda: c2.sign(c2.photo(seed=16), thumbnail=c2.photo(1600, 1600, seed=17)),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_store_gets_a_bounded_answer_and_the_service_goes_on(client, kind) -> None:
    answer = judged(client, HOSTILE[kind]())
    provenance = answer["provenance"]
    assert provenance["present"] is True
    assert provenance["state"] in ("valid_untrusted", "invalid", "unreadable")
    assert len(provenance["codes"]) <= 16
    assert len(provenance["actions"]) <= 32
    assert len(provenance["ingredients"]) <= 10
    assert len(str(provenance)) < 5000
    assert answer["model_verdict"] in ("real", "fake", "inconclusive")
    if kind in ("malformed", "truncated", "claims_another_format"):
        assert provenance["state"] == "invalid"
        assert "provenance_invalid" in codes(answer)
    assert_still_serving(client)


def test_a_read_past_its_time_limit_is_killed_and_the_next_one_is_read(tiny_checkpoint) -> None:
    slow = c2.sign(c2.photo(seed=18), definition=c2.manifest(assertions=3000))
    settings = make_settings(tiny_checkpoint, max_upload_mb=8, provenance_timeout_s=0.2)
    with serving(settings) as client:
        answer = judged(client, slow)
        assert answer["provenance"]["state"] == "unreadable"
        assert answer["provenance"]["codes"] == ["provenance.timeout"]
        assert answer["verdict"] == answer["model_verdict"]  # the model's verdict still answered
        after = judged(client, c2.sign(c2.photo(seed=19)))
        assert after["provenance"]["state"] == "valid_untrusted"


class _Counting(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_remote_manifest_is_reported_and_never_fetched(client) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/manifest.c2pa"
        answer = judged(client, c2.sign(c2.photo(seed=20), remote_url=url))
    finally:
        server.shutdown()
        server.server_close()
    assert answer["provenance"]["state"] == "remote_manifest_not_fetched"
    assert answer["provenance"]["remote_url"] == url
    assert answer["verdict"] == answer["model_verdict"]
    assert _Counting.hits == 0


def test_a_deployment_that_does_not_read_credentials_answers_null(tiny_checkpoint) -> None:
    settings = make_settings(tiny_checkpoint, provenance_enabled=False)
    with serving(settings) as client:
        answer = judged(client, c2.sign(c2.photo(seed=21), definition=c2.manifest(c2.AI_GENERATED)))
    assert answer["provenance"] is None
    assert answer["verdict"] == answer["model_verdict"]
    assert "declared_ai_generated" not in codes(answer)


def test_predict_on_the_command_line_reads_credentials_as_the_service_does(
    client, tiny_checkpoint, tmp_path, capsys
) -> None:
    data = c2.sign(c2.photo(seed=22), definition=c2.manifest(c2.AI_GENERATED))
    image = tmp_path / "generated.jpg"
    image.write_bytes(data)
    served = judged(client, data)
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(c2.authority().root_pem)
    arguments = ["predict", "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*arguments, str(image)]) == 0
    offline = json.loads(capsys.readouterr().out)
    for field in ("verdict", "model_verdict", "provenance"):
        assert offline[field] == served[field]
    assert main([*arguments, "--trust-anchors", str(anchors), str(image)]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["state"] == "valid"
    assert main([*arguments, "--no-provenance", str(image)]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"] is None


def test_a_video_job_reads_the_clips_credentials(client) -> None:
    clip = c2.sign(
        write_video(seconds=1.0),
        "video/mp4",
        definition=c2.manifest(c2.AI_GENERATED, media_type="video/mp4"),
    )
    response = client.post(
        "/jobs/video", files={"file": ("clip.mp4", clip, "video/mp4")}, headers=HEADERS
    )
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["url"])
    assert job["status"] == "done", job
    assert job["result"]["provenance"]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert job["result"]["verdict"] == "fake"


def test_reads_are_counted_by_state(client) -> None:
    def count(state: str) -> float:
        text = client.get("/metrics").text
        line = f'veracity_provenance_reads_total{{state="{state}"}} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = count("none"), count("invalid")
    judged(client, c2.photo(seed=23))
    judged(client, c2.malformed(c2.photo(seed=24)))
    assert (count("none"), count("invalid")) == (before[0] + 1, before[1] + 1)


def test_the_cache_replays_credentials_only_under_the_same_trust_list(
    tiny_checkpoint, tmp_path
) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(c2.authority().root_pem)
    data = c2.sign(c2.photo(seed=25))
    store = {"data_dir": str(tmp_path / "store"), "cache_enabled": True}
    with serving(make_settings(tiny_checkpoint, **store)) as client:
        first, again = judged(client, data), judged(client, data)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["provenance"] == first["provenance"]
    trusted = make_settings(tiny_checkpoint, provenance_trust_anchors=str(anchors), **store)
    with serving(trusted) as client:
        answer = judged(client, data)
    assert answer["cached"] is False
    assert answer["provenance"]["state"] == "valid"


def test_an_answer_whose_credentials_went_unread_is_not_replayed(tiny_checkpoint, tmp_path) -> None:
    slow = c2.sign(c2.photo(seed=26), definition=c2.manifest(assertions=3000))
    settings = make_settings(
        tiny_checkpoint,
        max_upload_mb=8,
        provenance_timeout_s=0.2,
        cache_enabled=True,
        data_dir=str(tmp_path / "store"),
    )
    with serving(settings) as client:
        first, again = judged(client, slow), judged(client, slow)
    assert first["provenance"]["codes"] == ["provenance.timeout"]
    assert again["cached"] is False  # read again, not the timeout replayed
