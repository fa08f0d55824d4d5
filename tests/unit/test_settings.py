from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import DEMO_CHECKPOINT
from veracity.cli import main
from veracity.settings import Settings, describe_validation_error

KEY_A = "a" * 24
KEY_B = "b" * 24
# Settings whose default is computed where the process runs (a temp dir, the checkout).
RUNTIME_DEFAULTS = ("VERACITY_EXPORT_DIR", "VERACITY_CHECKPOINT")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path: Path) -> None:
    for name in ("VERACITY_API_KEYS", "MODEL_API_KEY", "VERACITY_AUTH_DISABLED", "VERACITY_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_documented_contract(monkeypatch) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", KEY_A)
    settings = Settings()
    assert settings.port == 8001
    assert settings.host == "127.0.0.1"
    assert settings.device == "auto"
    # The bundled demo, found from any working directory (this test runs in a temp dir).
    assert settings.checkpoint == DEMO_CHECKPOINT
    assert settings.checkpoint.is_absolute()
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert (settings.real_threshold, settings.fake_threshold) == (0.25, 0.75)
    assert settings.robustness_check is False


def test_comma_separated_keys_for_rotation(monkeypatch) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", f" {KEY_A} ,{KEY_B},")
    assert Settings().effective_api_keys == (KEY_A, KEY_B)


def test_legacy_model_api_key_still_works(monkeypatch) -> None:
    monkeypatch.setenv("MODEL_API_KEY", KEY_B)
    assert Settings().effective_api_keys == (KEY_B,)
    monkeypatch.setenv("VERACITY_API_KEYS", KEY_A)
    assert Settings().effective_api_keys == (KEY_A, KEY_B)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"VERACITY_API_KEYS={KEY_A}\nVERACITY_PORT=9100\n")
    settings = Settings()
    assert settings.effective_api_keys == (KEY_A,)
    assert settings.port == 9100


def test_no_key_refuses_to_start() -> None:
    with pytest.raises(ValidationError) as info:
        Settings()
    (line,) = describe_validation_error(info.value)
    assert "VERACITY_API_KEYS" in line
    assert "VERACITY_AUTH_DISABLED" in line


def test_auth_can_be_switched_off_explicitly(monkeypatch) -> None:
    monkeypatch.setenv("VERACITY_AUTH_DISABLED", "true")
    assert Settings().auth_disabled


def test_short_keys_are_refused(monkeypatch) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VERACITY_PORT", "99999"),
        ("VERACITY_PORT", "http"),
        ("VERACITY_DEVICE", "tpu"),
        ("VERACITY_MAX_UPLOAD_MB", "0"),
        ("VERACITY_LOG_LEVEL", "chatty"),
        ("VERACITY_INFERENCE_THREADS", "0"),
        ("VERACITY_MAX_QUEUE", "0"),
        ("VERACITY_REQUEST_TIMEOUT_S", "0"),
        ("VERACITY_RATE_LIMIT", "fast"),
        ("VERACITY_RATE_LIMIT", "0/second"),
        ("VERACITY_DAILY_QUOTA", "0"),
    ],
)
def test_each_bad_value_is_reported_by_variable_name(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", KEY_A)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    lines = describe_validation_error(info.value)
    assert lines
    assert all(line.startswith(f"{name}: ") for line in lines)


def test_keys_never_appear_in_the_settings_repr(monkeypatch) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", KEY_A)
    monkeypatch.setenv("MODEL_API_KEY", KEY_B)
    text = repr(Settings())
    assert KEY_A not in text
    assert KEY_B not in text


def test_serve_with_bad_configuration_prints_one_line_per_problem(monkeypatch, capsys) -> None:
    monkeypatch.setenv("VERACITY_API_KEYS", KEY_A)
    monkeypatch.setenv("VERACITY_PORT", "0")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]]
    assert err[0].startswith("veracity serve: invalid configuration: VERACITY_PORT: ")


def test_env_example_documents_every_setting_with_its_default() -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    documented: dict[str, str] = {}
    for raw in example.read_text().splitlines():
        line = raw.lstrip("# ").strip()
        if "=" in line and line.split("=", 1)[0].isupper():
            name, value = line.split("=", 1)
            documented[name] = value
    fields = {f"VERACITY_{name.upper()}": name for name in Settings.model_fields}
    fields["MODEL_API_KEY"] = fields.pop("VERACITY_LEGACY_API_KEY")
    assert set(documented) == set(fields)
    for env_name, field in fields.items():
        value, default = (
            documented[env_name],
            Settings.model_fields[field].get_default(call_default_factory=True),
        )
        if value == "":
            # Optional, a list with no entries, or a default computed at run time.
            assert default in (None, []) or env_name in RUNTIME_DEFAULTS, env_name
        elif isinstance(default, bool):
            assert value == str(default).lower(), env_name
        elif isinstance(default, int | float):
            assert float(value) == default, env_name
        else:
            assert value == str(default), env_name


def test_copying_env_example_gives_the_defaults(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(
        example.read_text().replace("VERACITY_API_KEYS=", f"VERACITY_API_KEYS={KEY_A}")
    )
    from_file = Settings()
    defaults = Settings(_env_file=None, api_keys=KEY_A)
    assert from_file.model_dump() == defaults.model_dump()
