"""``scan --store``: the results store a scan records its verdicts in, opened as the
service opens it (the same database, migrated or checked the same way)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from veracity.serving.recording import Recorder
from veracity.store.database import Database, prepare_database
from veracity.store.options import StoreOptions
from veracity.store.predictions import PredictionStore


@dataclass(frozen=True)
class ScanStore:
    """Where a scan records (``cache``: and answers files the store already judged)."""

    options: StoreOptions
    cache: bool = True


async def open_recorder(store: ScanStore) -> tuple[Recorder, Database]:
    """A recorder over the store, and its database (closed by the caller).

    Raises:
        ConfigurationError: the schema is behind and may not be migrated here.
        StoreUnavailableError and SQLAlchemy's errors: the database cannot be reached.
    """
    database = Database.open(store.options)
    try:
        await asyncio.to_thread(prepare_database, database.engine, migrate=store.options.migrate)
    except BaseException:
        await asyncio.to_thread(database.close)
        raise
    return Recorder(PredictionStore(database), cache=store.cache), database


def prepare_store(store: ScanStore) -> ScanStore:
    """Migrate (or check) the store's schema once, before Ray's actors connect; the store
    returned only checks it, so that many actors starting at once do not all migrate."""
    database = Database.open(store.options)
    try:
        prepare_database(database.engine, migrate=store.options.migrate)
    finally:
        database.close()
    return replace(store, options=replace(store.options, migrate=False))
