"""``drift-report``: every profiled model version's drift over a period, from the store."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.configuration import load_settings

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(value: str, now: datetime) -> datetime:
    """``24h``, ``90m``, ``7d`` back from ``now``, or an ISO 8601 time (UTC if no zone)."""
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration (e.g. 24h, 90m, 7d) nor an ISO 8601 time "
            "(e.g. 2026-11-30T08:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "drift-report",
        help="each model version's drift against its reference profile, with plots",
        description="Reads the results store (VERACITY_DATABASE_URL or VERACITY_DATA_DIR) and "
        "the models (VERACITY_MODEL_REPOSITORY or VERACITY_CHECKPOINT), scores every "
        "profiled version's answers in the period as GET /admin/drift does, and writes "
        "OUT/drift.json and OUT/drift_MODEL_VERSION.png. Exit code 3 when a version alerts.",
    )
    p.add_argument(
        "--since", required=True, help="start: a duration back from now (24h, 7d) or ISO time"
    )
    p.add_argument("--until", default=None, help="end: ISO time (default: now)")
    p.add_argument("--model", default=None, help="only this model")
    p.add_argument("--out", type=Path, required=True, help="directory for the report")
    # A period is scored on its newest VERACITY_DRIFT_MAX_ANSWERS answers of each version.
    p.set_defaults(handler=_cmd_drift_report)


def _cmd_drift_report(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from veracity.drift.plots import plot_version
    from veracity.drift.report import drift_report
    from veracity.errors import VeracityError
    from veracity.repository.layout import ModelRepository
    from veracity.serving.drift import DriftMonitor
    from veracity.settings import Settings
    from veracity.store.database import Database, describe_error, describe_url, prepare_database
    from veracity.store.windows import AnswerWindows

    # Nothing is served: the report needs the store, the models and the drift options.
    settings = load_settings(Settings, "drift-report", auth_disabled=True)
    if settings is None:
        return 2
    now = datetime.now(UTC)
    try:
        end = parse_since(args.until, now) if args.until else now
        start = parse_since(args.since, now)
    except argparse.ArgumentTypeError as e:
        print(f"veracity drift-report: {e}", file=sys.stderr)
        return 2
    if start >= end:
        print("veracity drift-report: --since must be before --until", file=sys.stderr)
        return 2
    repository = ModelRepository.configured(settings.model_repository, settings.checkpoint)
    database = Database.open(settings.store_options)
    try:
        prepare_database(database.engine, migrate=False)
        monitor = DriftMonitor(repository, AnswerWindows(database), settings.drift_options)
        state = asyncio.run(
            monitor.assess(model=args.model, window_s=(end - start).total_seconds(), end=end)
        )
    except SQLAlchemyError as e:
        where = describe_url(database.engine.url)
        print(f"veracity drift-report: {where}: {describe_error(e)}", file=sys.stderr)
        return 1
    except VeracityError as e:
        print(f"veracity drift-report: {e.message}", file=sys.stderr)
        return 1
    finally:
        database.close()
    report = drift_report(state.window, state.versions, state.unmonitored)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift.json").write_text(report.model_dump_json(indent=2) + "\n")
    for entry in report.versions:
        plot_version(entry, args.out / f"drift_{entry.model}_{entry.version}.png")
        flagged = [s.signal for s in entry.signals if s.state == "drift"]
        print(
            f"{entry.model} {entry.version}: {entry.answers} answers, "
            + (f"ALERT ({', '.join(flagged)})" if flagged else "no alert")
        )
    for skipped in report.unmonitored:
        print(f"{skipped.model} {skipped.version}: not scored: {skipped.reason}")
    print(f"report: {args.out / 'drift.json'}")
    return 3 if any(entry.alert for entry in report.versions) else 0
