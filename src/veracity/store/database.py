"""The results database: an engine for SQLite (embedded, the default) or PostgreSQL, and its
Alembic migrations.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, so several
threads of one process share the file. PostgreSQL connections carry a connect timeout and a
statement timeout, so a database that stops answering makes a write fail within seconds
instead of holding a request forever.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from veracity.errors import ConfigurationError

if TYPE_CHECKING:
    from veracity.metrics import ServiceMetrics
    from veracity.settings import StoreSettings
    from veracity.store.predictions import PredictionStore

logger = logging.getLogger("veracity.store")

DATABASE_FILE = "veracity.db"
# Held while migrating PostgreSQL, so replicas starting together migrate one at a time.
_MIGRATION_LOCK_ID = 0x7665726163697479  # "veracity"


def resolve_database_url(url: str | None, data_dir: Path) -> URL:
    """The URL to connect to: ``url`` as configured, or the SQLite file in ``data_dir``.

    ``postgresql://user:password@host:port/db`` works as given: it is mapped to the psycopg 3
    driver (SQLAlchemy would otherwise pick psycopg2, which is not installed).

    Raises:
        ConfigurationError: not a URL, or a database other than SQLite and PostgreSQL.
    """
    if not url:
        return URL.create("sqlite+pysqlite", database=str(data_dir / DATABASE_FILE))
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigurationError(
            "VERACITY_DATABASE_URL is not a database URL; write "
            "postgresql://user:password@host:port/db or sqlite:///path/to/file.db"
        ) from e
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigurationError(
                f"VERACITY_DATABASE_URL names the driver {driver!r}; this service connects "
                "to PostgreSQL with psycopg 3: write postgresql://... (or postgresql+psycopg://)"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(
                "VERACITY_DATABASE_URL: an in-memory SQLite database would lose every verdict "
                "at exit; name a file (sqlite:///path/to/file.db) or leave the URL unset"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigurationError(
        f"VERACITY_DATABASE_URL: {backend!r} is not supported; use PostgreSQL or SQLite"
    )


def create_database_engine(url: URL, *, timeout_s: float, pool_size: int = 4) -> Engine:
    """An engine whose every connection gives up within about ``timeout_s``."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=timeout_s,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    milliseconds = max(1, int(timeout_s * 1000))
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, round(timeout_s)),
        # Server-side limits: a statement or a lock wait past the timeout is cancelled.
        "options": f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}",
    }
    return create_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout_s,
        # A replica outlives database restarts: test a pooled connection before using it.
        pool_pre_ping=True,
    )


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    cursor = connection.cursor()
    # WAL: readers and the writer do not block each other; NORMAL is durable across
    # process crashes (a power cut may lose the last transactions, never corrupt the file).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def describe_url(url: URL) -> str:
    """The URL with its password hidden, for logs and errors."""
    return url.render_as_string(hide_password=True)


def describe_error(error: BaseException) -> str:
    """A database error's first line (drivers append SQL and links), for logs and the CLI."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` (under a PostgreSQL advisory lock, so
    that replicas starting at once migrate one after the other)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "veracity.store:migrations")
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("database migrated", extra={"database": describe_url(engine.url)})


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "veracity.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def prepare_database(engine: Engine, *, migrate: bool) -> None:
    """At start-up: migrate to the latest schema, or (``migrate`` off) check that someone
    did. Raises ConfigurationError when the schema is behind and may not be migrated here."""
    if migrate:
        upgrade_database(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the results database {describe_url(engine.url)} is at schema revision "
            f"{current or 'none'}, this version needs {head}: run `veracity db upgrade` "
            "(or set VERACITY_DATABASE_MIGRATE=true)"
        )


def settings_engine(settings: StoreSettings) -> Engine:
    """An engine for the database the settings name (nothing is connected yet)."""
    url = resolve_database_url(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.data_dir,
    )
    return create_database_engine(url, timeout_s=settings.store_timeout_s)


def open_store(settings: StoreSettings, metrics: ServiceMetrics | None = None) -> PredictionStore:
    """The store the settings describe."""
    from veracity.store.predictions import PredictionStore

    engine = settings_engine(settings)
    return PredictionStore(engine, timeout_s=settings.store_timeout_s, metrics=metrics)
