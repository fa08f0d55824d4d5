"""``db`` and ``export-feedback``: the results store, migrated, inspected and exported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.configuration import load_settings

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "db",
        help="migrate the results database (upgrade) or show its schema revision (current)",
        description="The database is VERACITY_DATABASE_URL, or the SQLite file in "
        "VERACITY_DATA_DIR (default ./var). Replicas may run `upgrade` at once: PostgreSQL "
        "migrations take an advisory lock.",
    )
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(handler=_cmd_db)

    p = sub.add_parser(
        "export-feedback",
        help="write reviewer-labelled kept inputs as a train/val ImageFolder tree",
        description="Reads the results store (VERACITY_DATABASE_URL or VERACITY_DATA_DIR) and "
        "its kept inputs; each reviewed image goes under its latest label into train/ or "
        "val/ (fixed by its SHA-256). `veracity train --data OUT` trains on it.",
    )
    p.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    p.set_defaults(handler=_cmd_export_feedback)


def _cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from veracity.settings import StoreSettings
    from veracity.store.database import (
        current_revision,
        describe_error,
        describe_url,
        head_revision,
        open_engine,
        upgrade_database,
    )

    settings = load_settings(StoreSettings, "db")
    if settings is None:
        return 2
    engine = open_engine(settings.store_options)
    where = describe_url(engine.url)
    database = engine.url.database
    if (
        args.action == "current"
        and engine.url.get_backend_name() == "sqlite"
        and database
        and not Path(database).exists()
    ):
        # Asking must not create an empty database file.
        engine.dispose()
        print(f"{where}: no database yet (schema revision none); `veracity db upgrade`")
        return 0
    try:
        if args.action == "upgrade":
            upgrade_database(engine)
        current = current_revision(engine)
    except SQLAlchemyError as e:
        print(f"veracity db {args.action}: {where}: {describe_error(e)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if current == head else f"behind (latest is {head})"
    print(f"{where}: schema revision {current or 'none'}, {state}")
    return 0 if current == head or args.action == "current" else 1


def _cmd_export_feedback(args: argparse.Namespace) -> int:
    from veracity.settings import StoreSettings
    from veracity.store.database import open_engine
    from veracity.store.export import export_feedback
    from veracity.store.inputs import InputFiles

    settings = load_settings(StoreSettings, "export-feedback")
    if settings is None:
        return 2
    engine = open_engine(settings.store_options)
    try:
        inputs = InputFiles(settings.inputs_dir, retention_s=0)
        summary = export_feedback(engine, inputs, args.out)
    finally:
        engine.dispose()
    for key, count in sorted(summary.written.items()):
        print(f"{args.out / key}: {count}")
    if summary.missing_input:
        print(
            f"{summary.missing_input} reviewed input(s) skipped: their bytes were not kept "
            "(VERACITY_STORE_INPUTS) or have expired",
            file=sys.stderr,
        )
    if summary.videos:
        print(f"{summary.videos} reviewed video(s) skipped", file=sys.stderr)
    return 0
