"""Group commit: rows recorded at the same moment share one transaction.

The answers of one forward pass are ready together (up to a batch of them), and each used
to be recorded in a transaction of its own: a hand-off to a store thread and back, a
statement and a commit per answer. Here a record that arrives while a write is under way
waits for it and joins the next one, so under load one write carries every answer that
came in meanwhile, and a lone answer is written at once, as before.

All rows of a write share its outcome: the store is up or down for all of them alike, and
the rows are the service's own (an id, a verdict), not client data that one bad item could
spoil for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

R = TypeVar("R")


class GroupWriter(Generic[R]):
    """Calls ``write`` with every item submitted since the previous call began."""

    def __init__(self, write: Callable[[list[R]], Awaitable[bool]]) -> None:
        self._write = write
        self._queued: list[tuple[list[R], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, items: list[R]) -> bool:
        """Write ``items`` with whatever else is waiting; the shared write's outcome.

        A caller that stops waiting (cancelled) does not cancel the write it joined: the
        rows of the others are in the same transaction.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # Read even when the caller has left, so a failure is never "never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._queued.append((items, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="veracity-store-writer")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queued:
            taken, self._queued = self._queued, []
            rows = [row for items, _ in taken for row in items]
            try:
                outcome: bool | Exception = await self._write(rows)
            except asyncio.CancelledError:  # the loop is closing: nobody gets an answer
                for _, future in taken:
                    future.cancel()
                raise
            except Exception as e:  # every record of the write fails alike
                outcome = e
            for _, future in taken:
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
