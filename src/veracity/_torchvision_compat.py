"""Make torchvision importable when its native extension does not match the installed torch.

timm imports torchvision. The torchvision wheel on the package index is built against the
CUDA build of torch; installed beside a CPU build of the same torch version, its native
library (``torchvision/_C.so``) fails to load. torchvision tolerates that for every operator
except two: ``_meta_registrations.py`` registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` unconditionally, and registering a kernel for an operator that was
never defined raises ``RuntimeError: operator torchvision::nms does not exist`` at import
time. That is a known upstream problem, not something this project can fix in torchvision.

The remedy here is the smallest one that works: when (and only when) the native library
cannot be loaded, define the schemas of those two operators so the registration succeeds.
They get no kernel, so calling them raises, which is right: this project never runs
detection ops. On matched builds the native library loads and nothing is touched.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Schemas as torchvision itself defines them (torchvision/csrc/ops/nms.cpp, qnms.cpp).
_UNGUARDED_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _native_library(package_dir: Path) -> Path | None:
    for suffix in EXTENSION_SUFFIXES:
        candidate = package_dir / f"_C{suffix}"
        if candidate.exists():
            return candidate
    return None


def _native_ops_load(package_dir: Path) -> bool:
    library = _native_library(package_dir)
    if library is None:
        return False
    try:
        torch.ops.load_library(str(library))  # type: ignore[no-untyped-call]
    except OSError:
        return False
    return True


@functools.cache
def ensure_torchvision_importable() -> torch.library.Library | None:
    """Define torchvision's unguarded operator schemas if its native library cannot load.

    Idempotent; must run before the first ``import torchvision`` (directly or via timm).

    Returns:
        The ``torch.library.Library`` holding the stand-in definitions (cached, because the
        definitions are dropped when it is garbage-collected), or ``None`` when nothing was
        needed: torchvision is absent, already imported, or its native library loads.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    if hasattr(torch.ops.torchvision, "nms"):
        return None
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if _native_ops_load(package_dir):
        return None
    logger.debug(
        "torchvision native ops do not load against torch %s; defining stand-in schemas",
        torch.__version__,
    )
    library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    for schema in _UNGUARDED_OPS.values():
        library.define(schema)  # type: ignore[no-untyped-call]
    return library
