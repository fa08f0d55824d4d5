"""Closing the loop: reviewer-labelled inputs written as the ImageFolder tree that
`veracity train` reads (``train/{real,fake}/`` and ``val/{real,fake}/``).

Each distinct input goes once, under its latest reviewer label (a later review overrules an
earlier one, whichever prediction it was given on), into the split its SHA-256 decides
(about a fifth in val/), so an image stays in the same split on every export and never
leaks from val/ into train/. Only kept inputs can be exported (VERACITY_STORE_INPUTS);
videos are skipped (train on frames: `veracity extract-frames`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from veracity.errors import ConfigurationError
from veracity.store.inputs import EXTENSIONS, InputFiles
from veracity.store.schema import FeedbackRow, PredictionRow

VAL_PERCENT = 20


@dataclass
class ExportSummary:
    written: dict[str, int] = field(default_factory=dict)  # "train/fake" -> files
    missing_input: int = 0  # reviewed, but the bytes were not kept (or expired)
    videos: int = 0


def split_of(sha256: str) -> str:
    return "val" if int(sha256[:8], 16) % 100 < VAL_PERCENT else "train"


def export_feedback(engine: Engine, inputs: InputFiles, out: Path) -> ExportSummary:
    """Raises ConfigurationError when ``out`` exists and is not empty."""
    if out.exists() and any(out.iterdir()):
        raise ConfigurationError(f"{out} is not empty; export into a new directory")
    latest: dict[str, tuple[str, str]] = {}  # sha256 -> (label, media type)
    kinds: dict[str, str] = {}
    with Session(engine) as session:
        query = (
            select(
                PredictionRow.input_sha256,
                PredictionRow.media_type,
                PredictionRow.kind,
                FeedbackRow.label,
            )
            .join(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
            .order_by(FeedbackRow.created_at, FeedbackRow.id)
        )
        for digest, media_type, kind, label in session.execute(query):
            latest[digest] = (label, media_type)  # later reviews overwrite earlier ones
            kinds[digest] = kind
    summary = ExportSummary()
    for digest, (label, media_type) in sorted(latest.items()):
        if kinds[digest] == "video":
            summary.videos += 1
            continue
        source = inputs.path(digest)
        if not source.is_file():
            summary.missing_input += 1
            continue
        folder = out / split_of(digest) / label
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"{digest}{EXTENSIONS.get(media_type, '')}")
        key = f"{split_of(digest)}/{label}"
        summary.written[key] = summary.written.get(key, 0) + 1
    # train/ and val/ both need both classes for `veracity train`: create the folders even
    # where no file landed, so the trainer says which class is short rather than failing
    # on a missing directory.
    for split in ("train", "val"):
        for label in ("real", "fake"):
            (out / split / label).mkdir(parents=True, exist_ok=True)
    return summary
