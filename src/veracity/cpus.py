"""How many CPUs this process may really use: affinity and the cgroup CPU quota.

``os.cpu_count()`` reports the host's cores. Inside a container with a CPU limit (Docker
``--cpus``, a Kubernetes ``resources.limits.cpu``) the kernel throttles the process to its
quota, and sizing thread pools by the host's cores oversubscribes it badly. Reading the
quota takes a few lines (no maintained library exposes it without a large dependency).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _quota_cpus(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota (v2, then v1); ``None`` when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000"
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # cgroup v1
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The smaller of the CPUs in this process's affinity mask and its cgroup quota (>= 1).

    A fractional quota rounds up: 1.5 CPUs can keep two threads busy part of the time.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _quota_cpus(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
