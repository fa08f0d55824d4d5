from pathlib import Path

import pytest

from veracity.cpus import available_cpus


@pytest.fixture
def affinity(monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))


def cgroup_v2(root: Path, value: str) -> Path:
    (root / "cpu.max").write_text(value + "\n")
    return root


def cgroup_v1(root: Path, quota: int, period: int) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.usefixtures("affinity")
@pytest.mark.parametrize(
    ("value", "expected"),
    [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", 16)],
)
def test_cgroup_v2_quota_caps_the_count(tmp_path: Path, value: str, expected: int) -> None:
    assert available_cpus(cgroup_v2(tmp_path, value)) == expected


@pytest.mark.usefixtures("affinity")
@pytest.mark.parametrize(("quota", "expected"), [(400000, 4), (-1, 16), (100000, 1)])
def test_cgroup_v1_quota_caps_the_count(tmp_path: Path, quota: int, expected: int) -> None:
    assert available_cpus(cgroup_v1(tmp_path, quota, 100000)) == expected


@pytest.mark.usefixtures("affinity")
def test_no_cgroup_files_means_the_affinity_mask(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == 16


def test_affinity_smaller_than_quota_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert available_cpus(cgroup_v2(tmp_path, "800000 100000")) == 2


@pytest.mark.usefixtures("affinity")
def test_garbage_cgroup_files_are_ignored(tmp_path: Path) -> None:
    assert available_cpus(cgroup_v2(tmp_path, "nonsense")) == 16


def test_thread_budget_never_exceeds_the_cpus(monkeypatch) -> None:
    from veracity.settings import Settings

    monkeypatch.setattr("veracity.settings.environment.available_cpus", lambda: 4)
    settings = Settings(_env_file=None, auth_disabled=True)
    assert settings.resolved_inference_threads * settings.resolved_torch_threads <= 4
    pinned = Settings(_env_file=None, auth_disabled=True, inference_threads=2)
    assert (pinned.resolved_inference_threads, pinned.resolved_torch_threads) == (2, 2)
