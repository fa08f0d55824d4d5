"""The service's credential reader: the content credentials of an upload, read within
bounds that no file can stretch.

Most files carry none; a scan for the markers every C2PA store or remote reference has
(the JUMBF box type, the store's ``c2pa`` label, XMP's ``dcterms:provenance``) answers
``present: false`` for them without leaving the process. A file with a marker is read in a
worker process (pebble's pool, started on first use): the read is killed and the worker
replaced when it passes its time limit, an allocation past the memory limit fails inside
the worker, a worker that dies is replaced, and reads beyond ``max_pending`` waiting are
not queued. Whatever happens there, the answer is a ``ProvenanceModel`` and the model's
verdict still stands; the event loop never waits on the native library.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import TimeoutError
from typing import Any

from pebble import ProcessPool

from veracity.metrics import ServiceMetrics
from veracity.provenance.options import ProvenanceOptions
from veracity.provenance.report import ProvenanceModel
from veracity.provenance.worker import prepare_worker, read_credentials, unreadable

logger = logging.getLogger(__name__)

# Byte strings every embedded C2PA store (JPEG APP11, PNG caBX, BMFF uuid box, WebP, RIFF)
# or remote reference contains; a file with none of them has no credentials to read.
MARKERS = (b"jumb", b"c2pa", b"dcterms:provenance")

# A worker's own address space before it reads (Python, the native library), measured at
# about 80 MB virtual; what remains of the limit is for the file it reads.
_WORKER_BASE_BYTES = 96 * 2**20
# Beyond a read's own time limit, what a wait may take: a worker's spawn (about 0.3 s, more
# under load) and the reads queued before it.
_WAIT_ALLOWANCE_S = 10.0
# Files up to this size are scanned for credential markers on the event loop (below).
_SCAN_INLINE_BYTES = 1 << 20


def carries_credentials(data: bytes) -> bool:
    return any(marker in data for marker in MARKERS)


class CredentialReader:
    """Owned by the app (the pool starts lazily; ``close`` at shutdown)."""

    def __init__(self, options: ProvenanceOptions, metrics: ServiceMetrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def max_payload_bytes(self) -> int:
        """The largest file sent to a worker. A worker holds a file about three times over
        (the pipe's buffer, the unpickled bytes, the library's copy) on top of its own
        ~60 MB, and a worker that cannot even receive its file dies before pebble times
        it; larger files answer ``provenance.too_large`` instead."""
        return max(0, (self.options.max_memory_bytes - _WORKER_BASE_BYTES) // 3)

    def _started(self) -> ProcessPool:
        """The pool, started (its workers spawned here, off the event loop); a pool that
        broke (a worker died outside a read, and pebble gave up on it) is replaced."""
        with self._lock:
            if self._pool is not None and not self._pool.active:
                logger.warning("provenance worker pool broke; starting a new one")
                _stop_in_background(self._pool)
                self._pool = None
            if self._pool is None:
                # spawn, not fork: the server process holds threads (torch, the event
                # loop's executors) that a forked child would inherit mid-lock.
                self._pool = ProcessPool(
                    max_workers=self.options.workers,
                    initializer=prepare_worker,
                    initargs=[self.options.max_memory_bytes],
                    context=multiprocessing.get_context("spawn"),
                )
                # Reading `active` starts a created pool (spawns its workers), here rather
                # than in the first schedule, on the event loop.
                if not self._pool.active:
                    raise RuntimeError("the provenance worker pool did not start")
            return self._pool

    async def read(self, data: bytes, media_type: str) -> ProvenanceModel | None:
        """``data``'s credentials (None: this deployment does not read them)."""
        if not self.options.enabled:
            return None
        found = await self._read(data, media_type)
        if self._metrics is not None:
            self._metrics.provenance.labels(found.state or "none").inc()
        return found

    async def _read(self, data: bytes, media_type: str) -> ProvenanceModel:
        # The scan holds the GIL wherever it runs, so a thread only helps a large file
        # (the event loop gets turns while it runs); a small one is scanned here, which
        # costs less than the hand-off to a thread and back (about 0.1 ms per 100 KB).
        if len(data) <= _SCAN_INLINE_BYTES:
            carried = carries_credentials(data)
        else:
            carried = await asyncio.to_thread(carries_credentials, data)
        if not carried:
            return ProvenanceModel.absent()
        if len(data) > self.max_payload_bytes:
            return ProvenanceModel.unreadable("provenance.too_large")
        if self._pending >= self.options.max_pending:
            logger.warning("provenance readers busy: a credential left unread")
            return ProvenanceModel.unreadable("provenance.busy")
        self._pending += 1
        try:
            return ProvenanceModel(**await self._read_in_worker(data, media_type))
        except (TypeError, ValueError) as e:  # a summary the model refuses (a library change)
            logger.warning("provenance summary refused: %s", e)
            return ProvenanceModel.unreadable("provenance.worker_failed")
        finally:
            self._pending -= 1

    async def _read_in_worker(self, data: bytes, media_type: str) -> dict[str, Any]:
        try:
            pool = await asyncio.to_thread(self._started)
            future = pool.schedule(
                read_credentials,
                args=[data, media_type, self.options.trust_anchors],
                timeout=self.options.timeout_s,
            )
        except RuntimeError as e:  # the pool broke between the check and the schedule
            logger.warning("provenance worker pool unavailable: %s", e)
            return unreadable("provenance.worker_failed")
        # pebble times a read from when a worker takes it; this bounds the whole wait (the
        # queue, a worker's spawn, a worker that died before taking it).
        try:
            summary: dict[str, Any] = await asyncio.wait_for(
                asyncio.wrap_future(future), self.options.timeout_s + _WAIT_ALLOWANCE_S
            )
        except TimeoutError:
            future.cancel()  # type: ignore[no-untyped-call]  # kills it if running
            return unreadable("provenance.timeout")
        except MemoryError:
            return unreadable("provenance.memory_limit")
        except Exception as e:
            # ProcessExpired: the native library aborted the worker (an allocation past the
            # limit in Rust aborts the process); RuntimeError: the pool is stopping.
            logger.warning("provenance worker failed: %s: %s", type(e).__name__, e)
            return unreadable("provenance.worker_failed")
        return summary

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
            pool.join(timeout=10)


def _stop_in_background(pool: ProcessPool) -> None:
    """Stop a broken pool without waiting on it: its threads may be the ones that died."""
    pool.stop()  # type: ignore[no-untyped-call]
    threading.Thread(target=pool.join, name="provenance-pool-stop", daemon=True).start()
