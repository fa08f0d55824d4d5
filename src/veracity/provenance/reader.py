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

from pebble import ProcessExpired, ProcessPool

from veracity.metrics import ServiceMetrics
from veracity.provenance.options import ProvenanceOptions
from veracity.provenance.report import ProvenanceModel
from veracity.provenance.worker import limit_memory, read_credentials

logger = logging.getLogger(__name__)

# Byte strings every embedded C2PA store (JPEG APP11, PNG caBX, BMFF uuid box, WebP, RIFF)
# or remote reference contains; a file with none of them has no credentials to read.
MARKERS = (b"jumb", b"c2pa", b"dcterms:provenance")


def carries_credentials(data: bytes) -> bool:
    return any(marker in data for marker in MARKERS)


class CredentialReader:
    """Owned by the app (``start`` is lazy; ``close`` at shutdown)."""

    def __init__(self, options: ProvenanceOptions, metrics: ServiceMetrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self._pending = 0

    def _started(self) -> ProcessPool:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the server process holds threads (torch, the event
                # loop's executors) that a forked child would inherit mid-lock.
                self._pool = ProcessPool(
                    max_workers=self.options.workers,
                    initializer=limit_memory,
                    initargs=[self.options.max_memory_bytes],
                    context=multiprocessing.get_context("spawn"),
                )
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
        # Up to an upload's size: scanned off the event loop.
        if not await asyncio.to_thread(carries_credentials, data):
            return ProvenanceModel.absent()
        if self._pending >= self.options.max_pending:
            logger.warning("provenance readers busy: a credential left unread")
            return ProvenanceModel.unreadable("provenance.busy")
        self._pending += 1
        try:
            return ProvenanceModel(**await self._read_in_worker(data, media_type))
        finally:
            self._pending -= 1

    async def _read_in_worker(self, data: bytes, media_type: str) -> dict[str, Any]:
        pool = await asyncio.to_thread(self._started)
        future = pool.schedule(
            read_credentials,
            args=[data, media_type, self.options.trust_anchors],
            timeout=self.options.timeout_s,
        )
        try:
            summary: dict[str, Any] = await asyncio.wrap_future(future)
        except TimeoutError:
            return {"present": True, "state": "unreadable", "codes": ["provenance.timeout"]}
        except MemoryError:
            return {"present": True, "state": "unreadable", "codes": ["provenance.memory_limit"]}
        except (ProcessExpired, OSError, RuntimeError) as e:
            # The native library aborted the worker (an allocation past the limit in Rust
            # aborts the process), or the pool is stopping.
            logger.warning("provenance worker failed: %s", e)
            return {"present": True, "state": "unreadable", "codes": ["provenance.worker_failed"]}
        return summary

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
            pool.join(timeout=10)
