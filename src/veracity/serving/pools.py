"""The service's threads, shared by every runner.

A pool decoding uploads, a pool decoding videos at a lower priority, one inference thread
(forward passes of every version, one batch at a time) and one loader thread (so a hot
load never stalls serving).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch

logger = logging.getLogger("veracity.service")

T = TypeVar("T")

# Added to a video thread's nice value (Linux schedules threads by their own nice value).
VIDEO_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), current + VIDEO_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        logger.debug("could not lower the video threads' priority")


@dataclass(frozen=True)
class Pools:
    """The service's threads, shared by every runner."""

    preprocess: ThreadPoolExecutor  # decoding and preprocessing uploads
    inference: ThreadPoolExecutor  # one thread: forward passes, one batch at a time
    video: ThreadPoolExecutor  # decoding videos, at a lower priority
    loader: ThreadPoolExecutor  # loading and warming up versions, off the serving threads

    @classmethod
    def create(
        cls, *, workers: int, videos: int, torch_threads: int | None, streams: int = 1
    ) -> Pools:
        """Start the threads: ``workers`` decoding uploads, ``videos`` decoding videos."""

        def set_torch_threads() -> None:
            # OpenMP keeps the thread count per calling thread: set it in each thread that
            # runs forward passes, or that thread uses every core and, beside the decode
            # pool, oversubscribes them (measured: half the throughput on 2 cores).
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)

        return cls(
            preprocess=ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="veracity-preprocess"
            ),
            # One thread per stream: up to ``streams`` batches run at once, each using the
            # engine's intra-op threads, while the pool above decodes the next requests.
            inference=ThreadPoolExecutor(
                max_workers=streams,
                thread_name_prefix="veracity-infer",
                initializer=set_torch_threads,
            ),
            # Videos decode in their own threads, so a long video never holds the pool that
            # decodes single images; at a lower CPU priority, so that decoding a video (and
            # FFmpeg's slice threads, which inherit it) yields the cores to inference.
            video=ThreadPoolExecutor(
                max_workers=videos,
                thread_name_prefix="veracity-video",
                initializer=_lower_thread_priority,
            ),
            loader=ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="veracity-load", initializer=set_torch_threads
            ),
        )

    def shutdown(self) -> None:
        """Wait for the work running in the threads; drop what has not started."""
        for executor in (self.preprocess, self.inference, self.video, self.loader):
            executor.shutdown(wait=True, cancel_futures=True)


async def run_in(pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
    # run_in_executor does not carry context variables; copy them so log lines written in
    # the worker thread keep the request ID.
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, fn)


def close_in(pool: ThreadPoolExecutor, close: Callable[[], None]) -> None:
    """Run ``close`` in ``pool`` without waiting for it (at once if the pool is shut)."""
    try:
        pool.submit(close)
    except RuntimeError:  # the pool is shut down (stopping): nothing decodes any more
        close()
