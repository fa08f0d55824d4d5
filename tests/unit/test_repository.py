"""The model repository's layout and the traffic split, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_tiny_checkpoint
from veracity.errors import CheckpointError, ModelNotFoundError
from veracity.repository.layout import ModelRepository, newest, version_key
from veracity.serving.traffic import Route


def test_versions_sort_by_number_and_named_ones_never_win() -> None:
    assert sorted(["10", "9", "rc", "1"], key=version_key) == ["1", "9", "10", "rc"]
    assert newest(["1", "10", "9", "zz-candidate"]) == "10"
    assert newest(["alpha", "beta"]) == "beta"


def test_scan_reports_what_is_not_a_usable_version(tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path / "det" / "1" / "m.safetensors")
    (tmp_path / "det" / "2").mkdir()  # empty
    bad = tmp_path / "det" / "3"
    write_tiny_checkpoint(bad / "a.safetensors")
    write_tiny_checkpoint(bad / "b.safetensors")  # two checkpoints: which one?
    (tmp_path / "det" / "bad name").mkdir()
    (tmp_path / "det" / ".hidden").mkdir()
    (tmp_path / "det" / "4").mkdir()
    (tmp_path / "det" / "4" / "m.safetensors").write_bytes(b"x")  # no metadata
    (tmp_path / "README.txt").write_text("not a model")
    found, problems = ModelRepository(tmp_path).scan()
    assert [v.key for v in found] == [("det", "1")]
    assert found[0].size_bytes == (tmp_path / "det" / "1" / "m.safetensors").stat().st_size
    reasons = {p.version: p.reason for p in problems}
    assert set(reasons) == {"2", "3", "4", "bad name"}
    assert "found none" in reasons["2"]
    assert "a.safetensors, b.safetensors" in reasons["3"]
    assert "metadata file" in reasons["4"]
    assert "letters, digits" in reasons["bad name"]


def test_find_tells_missing_from_broken(tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path / "det" / "1" / "m.safetensors")
    (tmp_path / "det" / "2").mkdir()
    repository = ModelRepository(tmp_path)
    assert repository.find("det", "1").metadata.model_name == "tiny"
    with pytest.raises(ModelNotFoundError):
        repository.find("det", "9")
    with pytest.raises(ModelNotFoundError):
        repository.find("..", "etc")
    with pytest.raises(CheckpointError, match="found none"):
        repository.find("det", "2")
    with pytest.raises(CheckpointError, match="not a directory"):
        ModelRepository(tmp_path / "nowhere").scan()


def test_a_single_checkpoint_is_a_one_model_repository(tiny_checkpoint: Path) -> None:
    repository = ModelRepository(checkpoint=tiny_checkpoint)
    (only,), problems = repository.scan()
    assert only.key == ("tiny", "0.0.1")
    assert problems == []
    with pytest.raises(ModelNotFoundError, match=r"serves only tiny/0\.0\.1"):
        repository.find("tiny", "2")


@pytest.mark.parametrize(
    ("percent", "requests", "expected"), [(25, 20, 5), (33, 300, 99), (1, 100, 1)]
)
def test_the_canary_gets_exactly_its_share(percent: float, requests: int, expected: int) -> None:
    route = Route(serving="1")
    route.adopt(route.spec.with_traffic("2", percent, None))
    chosen = [route.choose() for _ in range(requests)]
    assert sum(1 for version, role in chosen if role == "canary") == expected
    assert all(version == "2" for version, role in chosen if role == "canary")
    assert all(version == "1" for version, role in chosen if role == "primary")


def test_promote_keeps_the_way_back_and_ends_the_canary() -> None:
    route = Route(serving="1")
    route.adopt(route.spec.with_traffic("2", 50, shadow="3"))
    route.adopt(route.spec.promoted("2"))
    assert (route.serving, route.previous, route.canary, route.shadow) == ("2", "1", None, "3")
    assert route.choose() == ("2", "primary")
    route.adopt(route.spec.promoted("2"))  # promoting the serving version changes nothing
    assert route.previous == "1"
    assert route.uses("3")
    assert not route.uses("1")
