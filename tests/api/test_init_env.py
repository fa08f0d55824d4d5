"""`veracity init-env` (what `make run` calls first): a newcomer's first answer carries a
receipt, and a deployment's own settings are never changed."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.api.conftest import infer, jpeg_bytes, serving
from veracity.cli import main
from veracity.receipts import load_public_keys, verify_receipt
from veracity.settings import Settings


def _init(env: Path, key: Path) -> int:
    return main(["init-env", "--env", str(env), "--receipt-key", str(key)])


def test_a_first_run_gets_an_api_key_and_signed_receipts(tmp_path, tiny_checkpoint) -> None:
    env, key = tmp_path / ".env", tmp_path / "var" / "keys" / "receipts.pem"
    assert _init(env, key) == 0
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    written = env.read_text()
    assert _init(env, key) == 0  # a second run changes nothing
    assert env.read_text() == written
    settings = Settings(
        _env_file=str(env), checkpoint=tiny_checkpoint, device="cpu", data_dir=tmp_path / "var"
    )
    assert settings.receipt_signing_key == key
    (api_key,) = settings.effective_api_keys
    with serving(settings) as client:
        response = infer(client, jpeg_bytes(), key=api_key)
    assert response.status_code == 200, response.text
    claims = verify_receipt(
        response.json()["receipt"], load_public_keys(key.with_suffix(".pub.pem"))
    )
    assert claims["verdict"] == response.json()["verdict"]


def test_a_deployments_own_settings_are_kept(tmp_path) -> None:
    env, key = tmp_path / ".env", tmp_path / "receipts.pem"
    env.write_text(
        "VERACITY_API_KEYS=mine-0123456789abcdef\nVERACITY_RECEIPT_SIGNING_KEY=/run/secrets/k\n"
    )
    assert _init(env, key) == 0
    assert env.read_text().count("=") == 2
    assert not key.exists()
    # An empty value is unset (as .env.example leaves them): the key is added.
    env.write_text("VERACITY_AUTH_DISABLED=true\nVERACITY_RECEIPT_SIGNING_KEY=\n")
    assert _init(env, key) == 0
    assert f"VERACITY_RECEIPT_SIGNING_KEY={key}" in env.read_text()
    assert "VERACITY_API_KEYS" not in env.read_text()


def test_an_existing_env_is_completed_as_the_dotenv_reader_reads_it(tmp_path) -> None:
    env, key = tmp_path / ".env", tmp_path / "receipts.pem"
    # No final newline, a line with `export`, a world-readable file.
    env.write_text("export VERACITY_API_KEYS=mine-0123456789abcdef\nVERACITY_PORT=8002")
    env.chmod(0o644)
    assert _init(env, key) == 0
    lines = env.read_text().splitlines()
    assert lines[:2] == ["export VERACITY_API_KEYS=mine-0123456789abcdef", "VERACITY_PORT=8002"]
    assert lines[2:] == [f"VERACITY_RECEIPT_SIGNING_KEY={key}"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    # .env.example's `VERACITY_AUTH_DISABLED=false` does not turn keys off: one is added.
    other = tmp_path / "other.env"
    other.write_text("VERACITY_AUTH_DISABLED=false\n")
    assert _init(other, key) == 0
    assert "VERACITY_API_KEYS=" in other.read_text()
