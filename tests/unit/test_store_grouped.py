"""Group commit: records that arrive while a write is under way share the next one."""

import asyncio

import pytest

from veracity.errors import StoreUnavailableError
from veracity.store.grouped import GroupWriter


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Writes:
    """A write that holds until released and records what each call carried."""

    def __init__(self, outcome: bool | Exception = True) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.outcome = outcome

    async def __call__(self, rows: list[int]) -> bool:
        self.calls.append(rows)
        await self.release.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.anyio
async def test_records_arriving_during_a_write_share_the_next_one() -> None:
    writes = Writes()
    writer = GroupWriter(writes)
    first = asyncio.create_task(writer.submit([1]))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(writer.submit([n, n + 10])) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    writes.release.set()
    assert await asyncio.gather(first, *rest) == [True] * 4
    assert writes.calls == [[1], [2, 12, 3, 13, 4, 14]]


@pytest.mark.anyio
async def test_a_lone_record_is_written_at_once() -> None:
    writes = Writes()
    writes.release.set()
    writer = GroupWriter(writes)
    assert await writer.submit([7]) is True
    assert await writer.submit([8]) is True
    assert writes.calls == [[7], [8]]


@pytest.mark.anyio
async def test_every_record_of_a_write_gets_its_outcome() -> None:
    writes = Writes(outcome=False)
    writer = GroupWriter(writes)
    waiting = [asyncio.create_task(writer.submit([n])) for n in range(3)]
    await asyncio.sleep(0)
    writes.release.set()
    assert await asyncio.gather(*waiting) == [False, False, False]


@pytest.mark.anyio
async def test_a_failed_write_fails_its_records_and_the_next_write_runs() -> None:
    writes = Writes(outcome=StoreUnavailableError("down"))
    writer = GroupWriter(writes)
    waiting = [asyncio.create_task(writer.submit([n])) for n in range(2)]
    await asyncio.sleep(0)
    writes.release.set()
    for task in waiting:
        with pytest.raises(StoreUnavailableError):
            await task
    writes.outcome = True
    assert await writer.submit([9]) is True
    assert writes.calls[-1] == [9]


@pytest.mark.anyio
async def test_a_caller_that_stops_waiting_does_not_cancel_the_shared_write() -> None:
    writes = Writes()
    writer = GroupWriter(writes)
    leaving = asyncio.create_task(writer.submit([1]))
    await asyncio.sleep(0)
    staying = asyncio.create_task(writer.submit([2]))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    writes.release.set()
    assert await staying is True
    assert writes.calls == [[1], [2]]
