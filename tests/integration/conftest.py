"""A real server process: `veracity serve` on a free loopback port, stopped with its group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_repository

API_KEY = "integration-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    log_path: Path

    def logs(self) -> list[dict]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


def start_server(tmp_path: Path, checkpoint: Path, **env_overrides: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERACITY_")}
    env.pop("MODEL_API_KEY", None)
    env |= {
        "VERACITY_API_KEYS": API_KEY,
        "VERACITY_CHECKPOINT": str(checkpoint),
        "VERACITY_HOST": "127.0.0.1",
        "VERACITY_PORT": str(port),
        "VERACITY_DEVICE": "cpu",
        "VERACITY_SHUTDOWN_DRAIN_S": "10",
        "VERACITY_INFERENCE_THREADS": "2",
        "VERACITY_TORCH_THREADS": "1",
    } | env_overrides
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "veracity", "serve"],
            cwd=tmp_path,  # no stray .env
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path)


def serve_until_done(server: Server) -> Iterator[Server]:
    """A fixture's body for a started server: ready, yielded to the tests, stopped."""
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def serve_repository(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, admin_key: str
) -> Iterator[Server]:
    """A fixture's body for a server on a model repository (model "tiny", versions from
    tests.conftest.make_repository) with ``admin_key`` as its admin key, on PyTorch."""
    root = make_repository(tmp_path_factory.mktemp("models"))
    server = start_server(
        tmp_path_factory.mktemp("models-server"),
        checkpoint,
        VERACITY_MODEL_REPOSITORY=str(root),
        VERACITY_DEFAULT_MODEL="tiny",
        VERACITY_ADMIN_API_KEYS=admin_key,
        VERACITY_BACKEND="torch",
    )
    yield from serve_until_done(server)


@pytest.fixture
def server(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Server]:
    yield from serve_until_done(start_server(tmp_path, tiny_checkpoint))
