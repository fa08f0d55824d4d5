"""What drift monitoring reads from the results store: the answers of one model version
in a time window, and the reviewers' labels on them. Read from the shared database, so
every replica sees the same window whichever of them answered.

Cache hits (``cached_from``) are left out: they replay an answer already counted, and one
image sent a thousand times would otherwise outweigh the rest of the window. So are
videos: a profile holds image answers (README, "Drift").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from veracity.store.database import Database
from veracity.store.schema import FeedbackRow, PredictionRow


@dataclass(frozen=True)
class StoredAnswer:
    answer: dict[str, Any]
    media_type: str


class AnswerWindows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _in_window(self, model: str, version: str, start: datetime, end: datetime) -> Any:
        return (
            (PredictionRow.model_name == model)
            & (PredictionRow.model_version == version)
            & (PredictionRow.created_at >= start)
            & (PredictionRow.created_at < end)
            & PredictionRow.cached_from.is_(None)
            & (PredictionRow.kind != "video")
        )

    async def answers(
        self, model: str, version: str, start: datetime, end: datetime, *, limit: int
    ) -> list[StoredAnswer]:
        """The newest ``limit`` answers of the version in [start, end).

        Raises:
            StoreUnavailableError: the database failed or did not answer in time.
        """

        def work(session: Session) -> list[StoredAnswer]:
            query = (
                select(PredictionRow.response, PredictionRow.media_type)
                .where(self._in_window(model, version, start, end))
                .order_by(PredictionRow.created_at.desc())
                .limit(limit)
            )
            return [StoredAnswer(dict(r), m) for r, m in session.execute(query)]

        return await self.database.run("drift_window", work)

    async def reviews(
        self, model: str, version: str, start: datetime, end: datetime, *, limit: int
    ) -> list[tuple[str, str]]:
        """(the model's verdict, the reviewer's label) for each answer of the version (a
        video's too) whose latest label was given in [start, end): reviewers label days
        after the answer, so the window is on the label's time, not the answer's.

        Raises:
            StoreUnavailableError: the database failed or did not answer in time.
        """

        def work(session: Session) -> list[tuple[str, str]]:
            query = (
                select(PredictionRow.id, PredictionRow.response, PredictionRow.verdict)
                .add_columns(FeedbackRow.label)
                .join(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
                .where(
                    (PredictionRow.model_name == model)
                    & (PredictionRow.model_version == version)
                    & (FeedbackRow.created_at >= start)
                    & (FeedbackRow.created_at < end)
                )
                .order_by(FeedbackRow.created_at.desc(), FeedbackRow.id.desc())
                .limit(limit)
            )
            latest: dict[str, tuple[str, str]] = {}
            for pid, response, verdict, label in session.execute(query):
                own = response.get("model_verdict") if isinstance(response, dict) else None
                latest.setdefault(pid, (own if isinstance(own, str) else verdict, label))
            return list(latest.values())

        return await self.database.run("drift_reviews", work)
