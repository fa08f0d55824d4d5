"""The model service's options, built by the settings and passed down to ``serving/``.

They live here rather than in ``serving/`` because the settings sit below serving in the
layers (pyproject.toml), and they must stay torch-free for the light commands.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from veracity.images import DEFAULT_FORMATS, DecodeBudget
from veracity.runtime import BackendChoice, DevicePreference, Precision
from veracity.verdicts.decision import VerdictPolicy
from veracity.video.plan import VideoLimits


@dataclass(frozen=True)
class RunnerOptions:
    """How versions are loaded, threaded and batched."""

    device: DevicePreference = "auto"
    backend: BackendChoice = "torch"
    precision: Precision = "fp32"
    export_dir: Path | None = None
    workers: int = 1  # threads decoding uploads
    torch_threads: int | None = None  # intra-op threads per forward pass
    # Forward passes that may run at once on a CPU. On two cores with one intra-op thread
    # each, two batches run side by side instead of one core doing every forward pass
    # while the other waits for decoding (measured: the single inference thread was 92%
    # busy with the second core a third idle). An accelerator gets one (the service
    # decides when it picks the device): it runs one batch at a time anyway, and larger
    # batches use it better than several small ones.
    streams: int = 1
    max_batch_size: int = 8
    batch_wait_s: float = 0.002


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be for a version to decode it."""

    max_pixels: int = 40_000_000
    decode_budget: DecodeBudget = field(default_factory=DecodeBudget)
    formats: tuple[str, ...] = DEFAULT_FORMATS


@dataclass(frozen=True)
class AdmissionLimits:
    """The bound on work inside the service, for every model at once."""

    max_queue: int = 32
    request_timeout_s: float = 10.0
    video_timeout_s: float = 120.0
    max_concurrent_videos: int = 2
    body_budget_bytes: int = 256 * 2**20
    # Places of a forward pass that bulk items (video frames, batch files) may take while
    # single images wait (None: an eighth of a batch); see ARCHITECTURE.md, "Fairness".
    batch_share: int | None = None
    drain_s: float = 20.0  # how long stopping (or unloading) waits for work in flight


def default_replica_id() -> str:
    """The host's name (a pod's name on Kubernetes), with the process ID unless it is 1 (a
    container's only process), so that several processes on one host stay apart."""
    host = socket.gethostname() or "replica"
    pid = os.getpid()
    return (host if pid == 1 else f"{host}-{pid}")[:200]


@dataclass(frozen=True)
class RegistryOptions:
    """Which versions are loaded, and how many fit."""

    memory_budget_bytes: int = 4 * 2**30
    default_model: str | None = None  # NAME or NAME:VERSION; None: the only model
    load_on_demand: bool = True
    replica_id: str = ""  # this replica in GET /models ("": the host's name, and PID)
    sync_s: float = 5.0  # how often a replica reads the shared desired state


@dataclass(frozen=True)
class ServiceOptions:
    """Everything the model service is built with, one small object per part."""

    runner: RunnerOptions = field(default_factory=RunnerOptions)
    images: ImageLimits = field(default_factory=ImageLimits)
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    video_limits: VideoLimits = field(default_factory=VideoLimits)
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    registry: RegistryOptions = field(default_factory=RegistryOptions)

    @property
    def batch_share(self) -> int:
        """Bulk places per forward pass: as configured, else an eighth of a batch."""
        return self.admission.batch_share or max(1, self.runner.max_batch_size // 8)
