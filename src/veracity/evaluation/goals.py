"""What the held-out report's arms share: verdicts counted, and a goal as a pass/fail line.

The image arm (``heldout_report``) and the video arm (``heldout_video_report``) both count
verdicts the same way and state their goals the same way, so the two halves of the report
read alike.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from veracity.evaluation.measures import VERDICTS


class Judged(Protocol):
    """An image or a clip judged: its verdict, the reasons' codes, and ``error`` when it
    could not be made or read."""

    @property
    def verdict(self) -> str: ...

    @property
    def reasons(self) -> Sequence[str]: ...

    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class Goal:
    """One goal: what is measured, the number, the bound, and how many images it rests on.
    ``measured`` is NaN when nothing could be measured (which fails the goal);
    ``interval``, when known, how far it could be from what a larger sample of the same
    sources would give (``evaluation.intervals``). PASS and FAIL read the measured value:
    the interval says how much weight a PASS or FAIL bears, it does not change it."""

    name: str
    text: str
    measured: float
    target: float
    at_most: bool
    detail: str
    percent: bool = True
    interval: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured <= self.target if self.at_most else self.measured >= self.target

    def line(self) -> str:
        def show(value: float) -> str:
            if math.isnan(value):
                return "n/a"
            return f"{value:.1%}" if self.percent else f"{value:.3f}"

        bound = "<=" if self.at_most else ">="
        status = "PASS" if self.passed else "FAIL"
        spread = ""
        if self.interval is not None and not math.isnan(self.interval[0]):
            spread = f"; 95% interval {show(self.interval[0])} to {show(self.interval[1])}"
        return (
            f"{status}  {self.text}: {show(self.measured)} "
            f"(goal {bound} {show(self.target)}; {self.detail}{spread})"
        )


def count_verdicts(items: Iterable[Judged]) -> dict[str, Any]:
    """Images, each verdict's count and share of the judged ones, errors, reasons."""
    items = list(items)
    judged = [i for i in items if i.error is None]
    counts: dict[str, Any] = {"images": len(judged), "errors": len(items) - len(judged)}
    for verdict in VERDICTS:
        count = sum(1 for i in judged if i.verdict == verdict)
        counts[verdict] = count
        counts[f"{verdict}_rate"] = count / len(judged) if judged else math.nan
    counts["reasons"] = dict(sorted(Counter(r for i in judged for r in i.reasons).items()))
    return counts


def pct(value: float) -> str:
    """A share as a four-character table cell ("   -" when unmeasured)."""
    return "   -" if math.isnan(value) else f"{value:>4.0%}"
