"""What judging needs to know about the request it serves, in one value: who asks, under
which ID, for which model, within which deadline, and how its work is cancelled.

A live request builds one from its HTTP request (its cancel scope drops the work when the
client hangs up); a job builds one from the job (its work runs to the end, under the job's
deadline).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from veracity.callers import Caller
from veracity.serving.admission import Deadline

T = TypeVar("T")


class CancelScope(Protocol):
    """Runs the model's work for a request: to its end, or until the request is given up."""

    def __call__(self, work: Awaitable[T], /) -> Awaitable[T]: ...


async def _to_the_end(work: Awaitable[T]) -> T:
    return await work


@dataclass(frozen=True)
class RequestContext:
    """``deadline``: a video's own (a job's); None: the service's video deadline."""

    request_id: str
    caller: Caller
    model: str | None = None
    version: str | None = None
    deadline: Deadline | None = None
    run: CancelScope = _to_the_end
