# syntax=docker/dockerfile:1
#
# Two images from one file, picked by target:
#   docker build --target cpu -t veracity:cpu --build-arg TORCH_INDEX_URL=<PyTorch CPU index> .
#   docker build --target gpu -t veracity:gpu .
# `cpu` is the last stage, so a plain `docker build .` builds it. See DEPLOYMENT.md.
#
# Both run `veracity serve` as a non-root user, with the demo checkpoint baked in at
# /app/checkpoints (mount a volume there, or set VERACITY_CHECKPOINT, for another model).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------
# GPU: the same layout on a CUDA runtime base; torch's default Linux wheel is a CUDA build.
# checkov:skip=CKV_DOCKER_7: the image tag is pinned in the CUDA_IMAGE build argument above
FROM ${CUDA_IMAGE} AS gpu-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive
# The base image's tag fixes the Ubuntu release; exact package versions would break the
# build each time Ubuntu publishes a security update of python3.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt ./
RUN pip install -r requirements.txt
# ONNX Runtime's GPU build in place of its CPU build, at the version requirements.txt pins,
# so that VERACITY_BACKEND=auto can time it against PyTorch on the GPU.
ARG ONNXRUNTIME_VERSION=1.31.1
RUN pip uninstall -y onnxruntime \
    && pip install "onnxruntime-gpu==${ONNXRUNTIME_VERSION}"
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/docker/slim-venv.sh /usr/local/bin/slim-venv
RUN pip install --no-deps . \
    && slim-venv /opt/venv

FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 veracity \
    && useradd --system --uid 10001 --gid veracity --home-dir /app --shell /usr/sbin/nologin veracity \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/veracity
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VERACITY_HOST=0.0.0.0 \
    VERACITY_PORT=8001 \
    VERACITY_DEVICE=cuda \
    VERACITY_CHECKPOINT=/app/checkpoints/demo.safetensors \
    VERACITY_DATA_DIR=/var/lib/veracity
WORKDIR /app
COPY --from=gpu-build /opt/venv /opt/venv
COPY --chown=root:root --chmod=0644 checkpoints/demo.safetensors checkpoints/demo.calibration.safetensors checkpoints/demo.drift.json checkpoints/demo.json /app/checkpoints/
USER 10001:10001
EXPOSE 8001
# The results store's SQLite file (VERACITY_DATA_DIR) lives on a volume, not in the layer.
VOLUME ["/app/checkpoints", "/var/lib/veracity"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["veracity", "healthcheck"]
ENTRYPOINT ["veracity", "serve"]

# ---------------------------------------------------------------------------------------
# CPU: build a virtualenv, then copy only the virtualenv into a clean slim image.
FROM ${PYTHON_IMAGE} AS cpu-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# PyTorch's CPU-only wheels live on PyTorch's own index; the default torch wheel for Linux
# bundles CUDA (several GB), which would push this image far past 1 GB.
ARG TORCH_INDEX_URL=""
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
        echo "warning: TORCH_INDEX_URL not set; installing the default (CUDA) torch wheel" >&2; \
    fi \
    && pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/docker/slim-venv.sh /usr/local/bin/slim-venv
RUN pip install --no-deps . \
    && slim-venv /opt/venv

# ---------------------------------------------------------------------------------------
# Ray: the CPU image with Ray Data on top, for archive scans on a Ray cluster (`veracity
# scan --ray auto` in a KubeRay RayJob, deploy/ray/rayjob.yaml). KubeRay starts its own
# command (`ray start ...`) in these pods; the service image (cpu, below) stays without Ray.
FROM cpu-build AS ray-build
COPY requirements-ray.txt ./
RUN pip install -r requirements-ray.txt

FROM ${PYTHON_IMAGE} AS ray
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VERACITY_CHECKPOINT=/app/checkpoints/demo.safetensors
RUN groupadd --system --gid 10001 veracity \
    && useradd --system --uid 10001 --gid veracity --home-dir /app --shell /bin/bash veracity
WORKDIR /app
COPY --from=ray-build /opt/venv /opt/venv
COPY --chown=root:root --chmod=0644 checkpoints/demo.safetensors checkpoints/demo.calibration.safetensors checkpoints/demo.drift.json checkpoints/demo.json /app/checkpoints/
USER 10001:10001
# A scan is a batch job, not a server: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["veracity", "scan"]

FROM ${PYTHON_IMAGE} AS cpu
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VERACITY_HOST=0.0.0.0 \
    VERACITY_PORT=8001 \
    VERACITY_CHECKPOINT=/app/checkpoints/demo.safetensors \
    VERACITY_DATA_DIR=/var/lib/veracity
RUN groupadd --system --gid 10001 veracity \
    && useradd --system --uid 10001 --gid veracity --home-dir /app --shell /usr/sbin/nologin veracity \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/veracity
WORKDIR /app
COPY --from=cpu-build /opt/venv /opt/venv
COPY --chown=root:root --chmod=0644 checkpoints/demo.safetensors checkpoints/demo.calibration.safetensors checkpoints/demo.drift.json checkpoints/demo.json /app/checkpoints/
USER 10001:10001
EXPOSE 8001
# The results store's SQLite file (VERACITY_DATA_DIR) lives on a volume, not in the layer.
VOLUME ["/app/checkpoints", "/var/lib/veracity"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["veracity", "healthcheck"]
# Exec form: the server is PID 1 and receives SIGTERM directly, so it can drain.
ENTRYPOINT ["veracity", "serve"]
