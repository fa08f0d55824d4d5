"""`veracity models` against a real server: list, load, promote, rollback, traffic, scopes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import API_KEY, Server, serve_repository

ADMIN_KEY = "cli-admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def repo_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Server]:
    yield from serve_repository(tmp_path_factory, tiny_checkpoint, ADMIN_KEY)


def models(server: Server, *args: str, key: str | None = ADMIN_KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERACITY_")}
    if key is not None:
        env["VERACITY_ADMIN_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "veracity", "models", "--url", server.base_url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def serving(server: Server) -> str:
    response = httpx.get(
        f"{server.base_url}/infer",
        headers={"X-API-Key": API_KEY},
        timeout=10,
    )
    del response
    listing = httpx.get(f"{server.base_url}/models/tiny", headers={"X-API-Key": API_KEY}).json()
    return listing["serving_version"]


def test_the_lifecycle_from_the_command_line(repo_server: Server) -> None:
    listed = models(repo_server, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "VERSION", "STATE", "ROLE"]
    # The newest version serves when VERACITY_DEFAULT_MODEL names no version.
    assert any(line.split()[:4] == ["tiny", "2", "loaded", "serving"] for line in lines)
    assert any(line.split()[:3] == ["tiny", "empty", "invalid"] for line in lines)
    assert any(line.startswith("memory: ") for line in lines)
    # The replicas sharing the desired state: this one, at revision 0 (no change yet).
    assert "desired state: revision 0" in lines
    (replica,) = [line for line in lines if "(answered)" in line]
    assert replica.split()[2:4] == ["current", "0"]
    assert replica.endswith("other:1, tiny:2")

    promoted = models(repo_server, "promote", "tiny", "1")
    assert promoted.returncode == 0, promoted.stderr
    assert "serving 1, previous 2" in promoted.stdout
    assert "(revision 1)" in promoted.stdout
    assert serving(repo_server) == "1"
    stale = models(repo_server, "--if-revision", "0", "rollback", "tiny")
    assert stale.returncode == 2
    assert "409" in stale.stderr
    assert "revision_conflict" in stale.stderr
    assert serving(repo_server) == "1"

    failed = models(repo_server, "promote", "tiny", "broken")
    assert failed.returncode == 2
    assert "422" in failed.stderr
    assert "model_load_failed" in failed.stderr
    assert serving(repo_server) == "1"

    back = models(repo_server, "rollback", "tiny")
    assert back.returncode == 0, back.stderr
    assert serving(repo_server) == "2"

    traffic = models(repo_server, "--json", "traffic", "tiny", "--canary", "1", "--percent", "10")
    assert traffic.returncode == 0, traffic.stderr
    assert '"percent": 10.0' in traffic.stdout
    cleared = models(repo_server, "traffic", "tiny")
    assert "canary -" in cleared.stdout

    assert models(repo_server, "load", "other", "1").returncode == 0
    assert models(repo_server, "unload", "other", "1").returncode == 0

    forbidden = models(repo_server, "rollback", "tiny", key=API_KEY)
    assert forbidden.returncode == 2
    assert "403" in forbidden.stderr
    anonymous = models(repo_server, "list", key=None)
    assert anonymous.returncode == 2
    assert "401" in anonymous.stderr


def test_an_unreachable_service_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "veracity", "models", "--url", "http://127.0.0.1:9", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in result.stderr
