"""The results database: URLs, migrations (on SQLite and a real PostgreSQL), cursors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from veracity.cli import main
from veracity.errors import BadRequestError, ConfigurationError
from veracity.store.database import (
    create_database_engine,
    current_revision,
    describe_url,
    head_revision,
    prepare_database,
    resolve_database_url,
)
from veracity.store.predictions import decode_cursor, encode_cursor
from veracity.store.schema import Base


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db:5432/veracity", "postgresql+psycopg"),
        ("postgres://u:p@db/veracity", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/veracity", "postgresql+psycopg"),
        ("sqlite:////data/v.db", "sqlite+pysqlite"),
    ],
)
def test_standard_urls_work_as_given(given: str, driver: str) -> None:
    assert resolve_database_url(given, Path("unused")).drivername == driver


def test_no_url_means_the_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    url = resolve_database_url(None, tmp_path)
    assert url.database == str(tmp_path / "veracity.db")


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("mysql://u:p@db/v", "not supported"),
        ("postgresql+psycopg2://u:p@db/v", "psycopg 3"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("not a url", "not a database URL"),
    ],
)
def test_unusable_urls_are_refused_with_the_fix(given: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        resolve_database_url(given, Path("unused"))


def test_passwords_never_reach_logs() -> None:
    url = resolve_database_url("postgresql://user:s3cret@db/veracity", Path("unused"))
    assert "s3cret" not in describe_url(url)


def test_migrations_build_exactly_the_schema_the_code_uses(database_url: str, tmp_path) -> None:
    engine = create_database_engine(resolve_database_url(database_url, tmp_path), timeout_s=5)
    try:
        with pytest.raises(ConfigurationError, match="veracity db upgrade"):
            prepare_database(engine, migrate=False)
        prepare_database(engine, migrate=True)
        assert current_revision(engine) == head_revision()
        prepare_database(engine, migrate=False)  # now at head: no complaint
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_db_command_migrates_the_configured_database(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path
) -> None:
    monkeypatch.setenv("VERACITY_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env from the working directory
    assert main(["db", "current"]) == 0
    assert "revision none" in capsys.readouterr().out
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists()  # not created
    assert main(["db", "upgrade"]) == 0
    assert f"revision {head_revision()}, up to date" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0  # idempotent


def test_db_command_reports_an_unreachable_database(monkeypatch, capsys, tmp_path) -> None:
    # Nothing listens on port 1; the URL's password must not be printed.
    monkeypatch.setenv("VERACITY_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/v")
    monkeypatch.setenv("VERACITY_STORE_TIMEOUT_S", "2")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err
    assert "hunter2" not in err


def test_cursors_round_trip_and_forgeries_are_refused() -> None:
    when = datetime(2026, 11, 22, 8, 0, 1, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(when, "abc-1")) == (when, "abc-1")
    for forged in ("", "!!!", "bnVsbA", "WzEsMl0", encode_cursor(when, "x")[:-3]):
        with pytest.raises(BadRequestError):
            decode_cursor(forged)
