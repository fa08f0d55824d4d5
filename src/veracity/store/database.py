"""The results database: an engine for SQLite (embedded, the default) or PostgreSQL, its
Alembic migrations, and ``Database``, which runs each store operation on its own threads
under a deadline.

SQLAlchemy's sessions are synchronous; each operation runs on the database's own small
thread pool under a deadline, so a slow or unreachable database never blocks the event loop
and never holds a request longer than ``timeout_s`` (bar a commit already under way).

A deadline is not a rollback: the thread goes on after the request stops waiting. So an
operation commits only if its deadline has not passed when it is ready to; past that point
the caller waits for the commit's outcome and answers by it (or, when the database does not
confirm it either, says the outcome is unknown).

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, so several
threads of one process share the file. PostgreSQL connections carry a connect timeout and a
statement timeout, so a database that stops answering makes a write fail within seconds
instead of holding a request forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.trace import NoOpTracer, SpanKind, Tracer
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from veracity.errors import ConfigurationError, StoreOutcomeUnknownError, StoreUnavailableError
from veracity.store.options import StoreOptions
from veracity.tracing import child_span

if TYPE_CHECKING:
    from veracity.metrics import ServiceMetrics

logger = logging.getLogger("veracity.store")

T = TypeVar("T")

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


def open_engine(options: StoreOptions) -> Engine:
    """An engine for the database the options name (nothing is connected yet)."""
    url = resolve_database_url(options.url, options.data_dir)
    return create_database_engine(url, timeout_s=options.timeout_s)


class Database:
    """The engine, its sessions, and the threads every store operation runs on within
    ``timeout_s``: what the prediction store and the job queue share."""

    def __init__(
        self,
        engine: Engine,
        *,
        timeout_s: float,
        metrics: ServiceMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.metrics = metrics
        self._tracer = tracer or NoOpTracer()
        self._span_attributes = {"db.system.name": engine.dialect.name}
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        size = engine.pool.size() if hasattr(engine.pool, "size") else 4
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="veracity-store")

    @classmethod
    def open(
        cls,
        options: StoreOptions,
        metrics: ServiceMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> Database:
        """The database the options describe (nothing is connected yet)."""
        return cls(
            open_engine(options), timeout_s=options.timeout_s, metrics=metrics, tracer=tracer
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()

    async def run(self, operation: str, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a transaction on the database's threads within the deadline.

        Raises:
            StoreUnavailableError: the database failed or did not answer in time; nothing
                was changed.
            StoreOutcomeUnknownError: the commit had begun at the deadline and the database
                did not confirm it within a second deadline; it may have been applied.
        """
        attributes = self._span_attributes | {"db.operation.name": operation}
        with child_span(
            self._tracer, f"store.{operation}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await self._run(operation, work)

    async def _run(self, operation: str, work: Callable[[Session], T]) -> T:
        attempt = _Attempt()

        def in_session() -> T:
            with self._sessions.begin() as session:
                result = work(session)
                # The slow part (writing the rows, waiting for locks) before the point of no
                # return, so that a deadline passed meanwhile still rolls everything back.
                session.flush()
                if not attempt.begin_commit():
                    raise _AbandonedError(operation)
            return result

        started = time.perf_counter()
        future = self._executor.submit(in_session)
        outcome = asyncio.wrap_future(future)
        # Read here whatever happens, so an abandoned attempt's error is never reported as
        # "never retrieved".
        outcome.add_done_callback(_retrieve)
        try:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await asyncio.shield(outcome)
            except TimeoutError:
                # Never started, or not yet committing: it will change nothing.
                if future.cancel() or attempt.abandon():
                    raise
            except asyncio.CancelledError:
                # Nobody waits for the answer: roll back unless the commit is under way.
                if not future.cancel():
                    attempt.abandon()
                raise
            # Committing as the deadline passed: wait for what the database says.
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await asyncio.shield(outcome)
            except TimeoutError as e:
                self._failed(operation, e)
                raise _outcome_unknown(f"did not confirm {operation} in time") from e
        except (SQLAlchemyError, OSError) as e:
            self._failed(operation, e)
            if attempt.committing:
                # The COMMIT itself failed (a connection lost mid-commit, say): the database
                # may have applied it before the error, so "nothing was changed" is not known.
                raise _outcome_unknown(f"failed while committing {operation}") from e
            raise _unavailable(operation) from e
        except (TimeoutError, _AbandonedError) as e:
            self._failed(operation, e)
            raise _unavailable(operation) from e
        finally:
            if self.metrics is not None:
                self.metrics.store_seconds.labels(operation).observe(time.perf_counter() - started)

    def _failed(self, operation: str, error: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.store_failures.labels(operation).inc()
        logger.error(
            "results store %s failed",
            operation,
            extra={"operation": operation, "error": describe_error(error)},
        )


class _AbandonedError(Exception):
    """Raised in the store's thread to roll back an operation whose caller stopped waiting."""


class _Attempt:
    """Who decides an operation's fate at its deadline: the thread, by beginning to commit,
    or the caller, by abandoning it first (it is then rolled back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._committing = False

    def begin_commit(self) -> bool:
        with self._lock:
            self._committing = not self._abandoned
            return self._committing

    def abandon(self) -> bool:
        """True when the operation will not commit; False when its commit has begun."""
        with self._lock:
            self._abandoned = not self._committing
            return self._abandoned

    @property
    def committing(self) -> bool:
        with self._lock:
            return self._committing


def _unavailable(operation: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the results store is unavailable ({operation} failed); nothing was changed, retry shortly"
    )


def _outcome_unknown(what: str) -> StoreOutcomeUnknownError:
    return StoreOutcomeUnknownError(
        f"the results store {what}: it may or may not have been applied; check before "
        "repeating it (a job created with an Idempotency-Key can be sent again with the "
        "same key)"
    )


def _retrieve(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()
