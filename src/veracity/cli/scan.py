"""``scan``: judge every image and video of a folder or a manifest, one JSON line each,
resumable; configured like ``serve`` (VERACITY_* variables), so its verdicts are the
service's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veracity.cli.configuration import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from veracity.cli.arguments import Subcommands
    from veracity.scan.inputs import Location
    from veracity.scan.results import ResultsFile
    from veracity.scan.runner import ScanOptions, Summary
    from veracity.scan.store import ScanStore
    from veracity.settings import Settings


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "scan",
        help="judge every image and video of a folder or manifest into a JSONL file",
        description="Judges each file of TARGET (a folder, walked recursively in name "
        "order; a manifest, one path per line relative to it; or one file) with the serving "
        "core in-process, as POST /infer and /infer/video would (configured from VERACITY_* "
        "variables like `serve`; a video's limits are a job's). Writes one JSON line per "
        "file to --out as it ends: the answer's fields with path and sha256, or an error. "
        "Rerun with the same --out to resume: files whose content already has a line are "
        "skipped. Prints a summary at the end; exit code 1 if any file failed.",
    )
    p.add_argument("target", type=Path, metavar="TARGET", help="folder, manifest or file")
    p.add_argument("--out", type=Path, required=True, help="the JSONL results file")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="default: VERACITY_CHECKPOINT (or VERACITY_MODEL_REPOSITORY's default model)",
    )
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: 32)")
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="judge again the files whose line is an error (default: they count as done)",
    )
    p.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="files read and judged at once (default: the service's queue bound, at most 32)",
    )
    p.add_argument(
        "--store",
        action="store_true",
        help="also record each verdict in the results store (VERACITY_DATABASE_URL, else "
        "the SQLite file in VERACITY_DATA_DIR) as the service records one; a file whose "
        "answer a scan already recorded there is answered from it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = p.add_argument_group("on a Ray cluster (pip install veracity[ray])")
    ray.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="judge on Ray through Ray Data: a cluster's address, `auto` (the cluster this "
        "machine is part of) or `local` (start one on this machine's cores); the files' "
        "paths must be readable by every worker",
    )
    ray.add_argument(
        "--ray-actors", type=int, default=None, help="default: the cluster's CPUs / per actor"
    )
    ray.add_argument("--ray-cpus-per-actor", type=int, default=1, help="default: %(default)s")
    ray.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="default: 0")
    p.set_defaults(handler=_cmd_scan)


def _cmd_scan(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from veracity.errors import VeracityError
    from veracity.scan.results import ResultsFile
    from veracity.settings import Settings
    from veracity.store.database import describe_error

    # No HTTP, so no API keys: the scan reads what its user can read.
    overrides: dict[str, object] = {"auth_disabled": True}
    if args.checkpoint is not None:
        overrides["checkpoint"] = args.checkpoint
    settings = load_settings(Settings, "scan", **overrides)
    if settings is None:
        return 2
    if args.frames is not None and not 1 <= args.frames <= settings.video_max_frames:
        print(f"veracity scan: --frames must be 1-{settings.video_max_frames}", file=sys.stderr)
        return 2
    try:
        # Counted first (names only) for the progress bar, then listed again as scanned.
        total = None if args.no_progress else sum(1 for _ in _inputs(args))
        results = ResultsFile(args.out, retry_errors=args.retry_errors)
    except VeracityError as e:
        print(f"veracity scan: {e.message}", file=sys.stderr)
        return 2
    try:
        if args.ray is not None:
            summary = _scan_on_ray(settings, args, results, total)
        else:
            summary = asyncio.run(_scan(settings, args, results, total))
    except ModuleNotFoundError as e:
        if e.name != "ray":
            raise
        print("veracity scan: --ray needs Ray: pip install 'veracity[ray]'", file=sys.stderr)
        return 2
    except VeracityError as e:
        print(f"veracity scan: {e.message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:  # --store: the database cannot be reached or prepared
        print(f"veracity scan: the results store failed: {describe_error(e)}", file=sys.stderr)
        return 2
    finally:
        results.close()
    print(json.dumps(summary.as_dict() | {"out": str(args.out)}), flush=True)
    return 1 if summary.errors else 0


def _inputs(args: argparse.Namespace) -> Iterator[Location]:
    """TARGET's files but the results file itself (an --out inside the scanned folder)."""
    from veracity.scan.inputs import list_inputs

    out = args.out.absolute()
    return (
        path
        for path in list_inputs(args.target)
        if not (isinstance(path, Path) and path.absolute() == out)
    )


def _options(settings: Settings, args: argparse.Namespace) -> ScanOptions:
    from veracity.scan.runner import ScanOptions
    from veracity.video.plan import SamplingPlan

    admission = settings.admission_limits
    return ScanOptions(
        image_max_bytes=settings.max_upload_bytes,
        video_max_bytes=settings.video_max_upload_bytes,
        plan=SamplingPlan(count=args.frames or settings.video_frames),
        rule=settings.video_rule,
        video_limits=settings.job_video_limits,
        video_timeout_s=settings.job_timeout_s,
        # Within the service's own bound, or files would be refused as overload.
        in_flight=max(1, min(args.in_flight or 32, admission.max_queue)),
        videos_in_flight=admission.max_concurrent_videos,
    )


def _store(settings: Settings, args: argparse.Namespace) -> ScanStore | None:
    from veracity.scan.store import ScanStore

    if not args.store:
        return None
    return ScanStore(settings.store_options, cache=settings.cache_enabled)


def _progress_bar(total: int | None, disabled: bool) -> tuple[Any, Callable[[Summary], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", disable=disabled, file=sys.stderr)

    def progress(summary: Summary) -> None:
        bar.update(summary.finished - bar.n)
        bar.set_postfix(errors=sum(summary.errors.values()), skipped=summary.skipped)

    return bar, progress


def _scan_on_ray(
    settings: Settings, args: argparse.Namespace, results: ResultsFile, total: int | None
) -> Summary:
    from veracity.repository.layout import ModelRepository
    from veracity.scan.cluster import ClusterPlan, scan_on_ray

    plan = ClusterPlan(
        address=None if args.ray == "local" else args.ray,
        actors=args.ray_actors,
        cpus_per_actor=args.ray_cpus_per_actor,
        gpus_per_actor=args.ray_gpus_per_actor,
    )
    bar, progress = _progress_bar(total, args.no_progress)
    try:
        return scan_on_ray(
            _inputs(args),
            results,
            plan,
            repository=ModelRepository.configured(settings.model_repository, settings.checkpoint),
            service_options=settings.service_options,
            options=_options(settings, args),
            provenance=settings.provenance_options if settings.provenance_enabled else None,
            store=_store(settings, args),
            progress=progress,
        )
    finally:
        bar.close()


async def _scan(
    settings: Settings, args: argparse.Namespace, results: ResultsFile, total: int | None
) -> Summary:
    from veracity.provenance.reader import CredentialReader
    from veracity.repository.layout import ModelRepository
    from veracity.scan.runner import Judge, scan
    from veracity.scan.store import open_recorder
    from veracity.serving.service import ModelService

    store = _store(settings, args)
    recorder, database = (None, None) if store is None else await open_recorder(store)
    repository = ModelRepository.configured(settings.model_repository, settings.checkpoint)
    service = ModelService(repository, settings.service_options)
    credentials = CredentialReader(settings.provenance_options)
    bar, progress = _progress_bar(total, args.no_progress)

    await service.start()
    try:
        await service.wait_ready()
        judge = Judge(
            service,
            _options(settings, args),
            credentials=credentials if settings.provenance_enabled else None,
            done=results.done,
            recorder=recorder,
        )
        return await scan(_inputs(args), results, judge, progress=progress)
    finally:
        bar.close()
        await service.stop(settings.admission_limits.drain_s)
        credentials.close()
        if database is not None:
            await asyncio.to_thread(database.close)
