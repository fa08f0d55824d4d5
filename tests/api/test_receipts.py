"""Signed verdict receipts: on every answer, verifiable with the published keys, offline,
across key rotation; forgeries refused."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from joserfc.jwk import KeySet

from tests.api.conftest import API_KEY, assert_error, infer, jpeg_bytes, make_settings, serving
from tests.videofiles import write_video
from veracity.cli import main
from veracity.errors import InvalidReceiptError
from veracity.receipts import generate_key, verify_receipt


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key(tmp_path / "receipts" / "signing.pem")


def jwks_of(client) -> KeySet:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.json())


def test_every_answer_carries_a_receipt_of_what_it_says(tiny_checkpoint: Path, keys) -> None:
    settings = make_settings(tiny_checkpoint, receipt_signing_key=keys[0])
    data = jpeg_bytes(seed=1)
    with serving(settings) as client:
        answer = infer(client, data).json()
        published = jwks_of(client)
        claims = verify_receipt(answer["receipt"], published)
        model = client.get("/model", headers={"X-API-Key": API_KEY}).json()
        again = infer(client, data).json()
        batch = client.post(
            "/infer/batch",
            files=[("files", ("a.jpg", jpeg_bytes(seed=2), "image/jpeg"))],
            headers={"X-API-Key": API_KEY},
        ).json()
        video = write_video(seconds=1.0)
        # The stored prediction keeps the verdict, not a request's receipt.
        stored = client.get(
            f"/predictions/{answer['prediction_id']}", headers={"X-API-Key": API_KEY}
        ).json()
        assert "receipt" not in stored["result"]
        video_answer = client.post(
            "/infer/video",
            files={"file": ("v.mp4", video, "video/mp4")},
            params={"frames": 2},
            headers={"X-API-Key": API_KEY},
        ).json()
    assert claims["request_id"] == answer["request_id"]
    assert claims["prediction_id"] == answer["prediction_id"]
    assert claims["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert claims["model"] == {
        "name": model["model_name"],
        "version": model["model_version"],
        "weights_sha256": model["weights_sha256"],
    }
    assert claims["verdict"] == answer["verdict"]
    assert claims["fake_prob"] == answer["fake_prob"]
    assert claims["real_prob"] == answer["real_prob"]
    assert claims["cached"] is False
    assert claims["iss"] == "veracity"
    assert isinstance(claims["iat"], int)
    # A cached answer is vouched for as such, for its own request.
    cached = verify_receipt(again["receipt"], published)
    assert (cached["cached"], cached["request_id"]) == (True, again["request_id"])
    item = batch["items"][0]["result"]
    assert verify_receipt(item["receipt"], published)["prediction_id"] == item["prediction_id"]
    video_claims = verify_receipt(video_answer["receipt"], published)
    assert video_claims["input_sha256"] == hashlib.sha256(video).hexdigest()
    assert video_claims["fake_prob"] == video_answer["fake_prob"]


def test_old_receipts_stay_verifiable_after_rotation(
    tiny_checkpoint: Path, keys, tmp_path: Path
) -> None:
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=keys[0])) as client:
        old = infer(client, jpeg_bytes(seed=3)).json()["receipt"]
    new_private, _ = generate_key(tmp_path / "receipts" / "next.pem")
    rotated = make_settings(
        tiny_checkpoint, receipt_signing_key=new_private, receipt_verify_keys=str(keys[1])
    )
    with serving(rotated) as client:
        published = jwks_of(client)
        new = infer(client, jpeg_bytes(seed=4)).json()["receipt"]
    assert len(published.keys) == 2
    assert verify_receipt(old, published)["verdict"]
    assert verify_receipt(new, published)["verdict"]
    # Without the old key published, the old receipt no longer verifies.
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=new_private)) as client:
        only_new = jwks_of(client)
    with pytest.raises(InvalidReceiptError):
        verify_receipt(old, only_new)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["verdict"] = "real" if claims["verdict"] != "real" else "fake"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_forged_truncated_and_foreign_receipts_are_refused(
    tiny_checkpoint: Path, keys, tmp_path: Path
) -> None:
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=keys[0])) as client:
        receipt = infer(client, jpeg_bytes(seed=5)).json()["receipt"]
        published = jwks_of(client)
    other, _ = generate_key(tmp_path / "other" / "k.pem")
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=other)) as client:
        foreign = infer(client, jpeg_bytes(seed=5)).json()["receipt"]
    for bad in (_tamper(receipt), receipt[:-10], receipt.rsplit(".", 1)[0], "", "a.b.c", foreign):
        with pytest.raises(InvalidReceiptError):
            verify_receipt(bad, published)


def test_verify_receipt_checks_offline_with_the_file(
    tiny_checkpoint: Path, keys, tmp_path: Path, capsys
) -> None:
    data = jpeg_bytes(seed=6)
    image = tmp_path / "image.jpg"
    image.write_bytes(data)
    other = tmp_path / "other.jpg"
    other.write_bytes(jpeg_bytes(seed=7))
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=keys[0])) as client:
        receipt = infer(client, data).json()["receipt"]
        jwks = tmp_path / "jwks.json"
        jwks.write_text(client.get("/.well-known/jwks.json").text)
    saved = tmp_path / "receipt.txt"
    saved.write_text(receipt)
    assert main(["verify-receipt", receipt, "--keys", str(jwks), "--file", str(image)]) == 0
    assert main(["verify-receipt", f"@{saved}", "--keys", str(keys[1])]) == 0  # the PEM
    assert main(["verify-receipt", receipt, "--keys", str(jwks), "--file", str(other)]) == 1
    assert "is not the file" in capsys.readouterr().err
    assert main(["verify-receipt", _tamper(receipt), "--keys", str(jwks)]) == 2
    assert main(["verify-receipt", receipt, "--keys", str(tmp_path / "missing.json")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_without_a_signing_key_there_are_no_receipts(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        assert infer(client, jpeg_bytes(seed=8)).json()["receipt"] is None
        assert_error(client.get("/.well-known/jwks.json"), 404, "not_found")


def test_a_bad_signing_key_stops_the_service_with_a_clear_error(
    tiny_checkpoint: Path, keys, tmp_path: Path
) -> None:
    from veracity.api.app import create_app
    from veracity.errors import ConfigurationError

    for path, words in ((keys[1], "public key"), (tmp_path / "none.pem", "not a readable")):
        with pytest.raises(ConfigurationError, match=words):
            create_app(make_settings(tiny_checkpoint, receipt_signing_key=path))


def test_the_service_checks_receipts_for_clients(tiny_checkpoint: Path, keys) -> None:
    data = jpeg_bytes(seed=9)
    digest = hashlib.sha256(data).hexdigest()
    with serving(make_settings(tiny_checkpoint, receipt_signing_key=keys[0])) as client:
        receipt = infer(client, data).json()["receipt"]
        ok = client.post("/receipts/verify", json={"receipt": receipt, "input_sha256": digest})
        assert ok.status_code == 200
        assert ok.json()["valid"] is True
        assert ok.json()["matches_input"] is True
        assert ok.json()["claims"]["input_sha256"] == digest
        other = client.post("/receipts/verify", json={"receipt": receipt, "input_sha256": "0" * 64})
        assert other.json()["matches_input"] is False
        for bad in (_tamper(receipt), receipt[:-12], "x.y.z", "no-dots"):
            assert_error(
                client.post("/receipts/verify", json={"receipt": bad}), 400, "invalid_receipt"
            )
        assert_error(
            client.post("/receipts/verify", json={"receipt": "x" * 20_000}), 422, "validation_error"
        )
        assert_error(
            client.post("/receipts/verify", json={"receipt": receipt, "input_sha256": "zz"}),
            422,
            "validation_error",
        )
