#!/bin/sh
# Remove from a built virtualenv what a serving image never uses. Run by both build stages
# of the Dockerfile, after `pip install`.
#   - torch/include, torch/share: C++ headers and CMake files for building extensions
#   - torch/bin: C++ test binaries and protoc; only torch_shm_manager is used at run time
#   - onnx/backend/test/data: onnx's own conformance-test fixtures
#   - c2pa/libs/*.rlib, *.d: the Rust static library and its dependency list (30 MB), for
#     linking; c2pa-python loads only libc2pa_c.so
#   - pip, setuptools, wheel: nothing is installed into a running container
#   - __pycache__: PYTHONDONTWRITEBYTECODE is set, and stale bytecode is dead weight
set -eu
venv="$1"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$site/torch/include" "$site/torch/share"
find "$site/torch/bin" -type f ! -name torch_shm_manager -delete
rm -rf "$site/onnx/backend/test/data"
rm -f "$site"/c2pa/libs/*.rlib "$site"/c2pa/libs/*.d
"$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools wheel 2>/dev/null || true
find "$venv" -name '__pycache__' -prune -exec rm -rf {} +
