"""The same scan on a Ray cluster through Ray Data: the only module that imports ray, and
only when a scan asks for it (`veracity scan --ray`; `pip install veracity[ray]`).

The driver lists the files (paths every worker can read: a shared volume, or the one
machine of a local cluster), and Ray Data's ``map_batches`` hands them in small batches to
a pool of actors, each holding a ``Judge`` over its own ``ModelService`` (loaded once, on
its own event loop, sized to the CPUs it was given). The lines stream back to the driver,
which writes them to the same JSONL file as a local scan, so the output, the resume and
the summary are the same. Ray Data restarts a lost actor and retries its batches (its
defaults for an actor pool: ``max_restarts`` and ``max_task_retries`` unbounded); a file
is only done once its line is written, so
a retried batch can only add a second line for a file whose first was already written
(a duplicate, never a loss). Copies of one file judged by different actors are both
judged: each actor knows only its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from veracity.provenance.options import ProvenanceOptions
from veracity.provenance.reader import CredentialReader
from veracity.repository.layout import ModelRepository
from veracity.scan.inputs import Location, as_location
from veracity.scan.results import ResultsFile
from veracity.scan.runner import Judge, ScanOptions, Summary, keep
from veracity.scan.store import ScanStore, open_recorder, prepare_store
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.settings.options import ServiceOptions

BATCH_FILES = 8  # files per batch an actor takes: small, so a lost actor redoes little


@dataclasses.dataclass(frozen=True)
class ClusterPlan:
    """Where and how wide: ``address`` as ``ray.init`` takes it (``auto``: the cluster this
    machine belongs to; None: a local one on this machine's cores), actors and the CPUs
    (and GPUs) each takes."""

    address: str | None
    actors: int | None = None  # None: the cluster's CPUs / cpus_per_actor
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0


class _Actor:
    """One actor's judge: a ModelService on its own event loop, loaded at construction."""

    def __init__(
        self,
        repository: ModelRepository,
        service_options: ServiceOptions,
        options: ScanOptions,
        provenance: ProvenanceOptions | None,
        done: frozenset[str],
        store: ScanStore | None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._service = ModelService(repository, service_options)
        self._credentials = None if provenance is None else CredentialReader(provenance)
        recorder = self._loop.run_until_complete(self._start(store))
        self._judge = Judge(
            self._service, options, credentials=self._credentials, done=done, recorder=recorder
        )

    async def _start(self, store: ScanStore | None) -> Recorder | None:
        """Load the model, and open the store where the scan records (each actor its own
        connections; the driver migrated the schema)."""
        await self._service.start()
        await self._service.wait_ready()
        return None if store is None else (await open_recorder(store))[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        async def judge_all() -> list[dict[str, Any]]:
            paths = [as_location(str(p)) for p in batch["path"]]
            return list(await asyncio.gather(*(self._judge(p) for p in paths)))

        lines = self._loop.run_until_complete(judge_all())
        return {"line": [json.dumps(line, separators=(",", ":")) for line in lines]}


def scan_on_ray(
    paths: Iterable[Location],
    results: ResultsFile,
    plan: ClusterPlan,
    *,
    repository: ModelRepository,
    service_options: ServiceOptions,
    options: ScanOptions,
    provenance: ProvenanceOptions | None,
    store: ScanStore | None = None,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Judge every file of ``paths`` not yet in ``results`` on Ray; write each line (and,
    with ``store``, each actor records its verdicts there as ``scan --store`` does)."""
    import ray
    import ray.data

    if store is not None:
        store = prepare_store(store)

    summary = Summary()
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=plan.address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the scan's own bar counts files
    items = [{"path": str(path)} for path in paths]
    summary.listed = len(items)
    if not items:
        return summary
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = plan.actors or max(1, cpus // plan.cpus_per_actor)
    # Each actor runs one forward pass at a time on the CPUs it was given: its service
    # must not size itself to the whole machine (every actor would take every core).
    runner = dataclasses.replace(
        service_options.runner,
        workers=plan.cpus_per_actor,
        torch_threads=plan.cpus_per_actor,
        streams=1,
    )
    dataset = ray.data.from_items(items).map_batches(
        _Actor,
        batch_size=BATCH_FILES,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor or None,
        fn_constructor_kwargs={
            "repository": repository,
            "service_options": dataclasses.replace(service_options, runner=runner),
            "options": options,
            "provenance": provenance,
            "done": frozenset(results.done),
            "store": store,
        },
    )
    for row in dataset.iter_rows():
        keep(results, summary, json.loads(row["line"]))
        if progress is not None:
            progress(summary)
    summary.seconds = time.perf_counter() - started
    return summary
