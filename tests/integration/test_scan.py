"""`veracity scan`: a folder, a manifest or one file judged into JSONL with the service's own
verdicts, every file a line (verdict, duplicate or error), resumable after SIGKILL without
judging a file twice or losing one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.api.conftest import API_KEY, jpeg_bytes, make_settings, serving
from tests.videofiles import write_video
from veracity.cli import main


@pytest.fixture
def scan_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The environment a scan is configured from (as `serve` is): nothing of this machine's."""
    env = {
        "VERACITY_DATA_DIR": str(tmp_path / "data"),
        "VERACITY_DEVICE": "cpu",
        "VERACITY_LOG_LEVEL": "WARNING",
        "VERACITY_TORCH_THREADS": "1",
    }
    for name in list(os.environ):
        if name.startswith("VERACITY_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no ./.env
    return env


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_folder_gives_every_file_a_line_with_the_services_verdict(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    photos = {f"p{i}.jpg": jpeg_bytes(200, 150, seed=i) for i in range(4)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    (folder / "sub" / "copy.jpg").write_bytes(photos["p0.jpg"])
    clip = write_video(seconds=1.0)
    (folder / "sub" / "clip.mp4").write_bytes(clip)
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.jpg").write_bytes(photos["p1.jpg"][:400])
    out = tmp_path / "results.jsonl"

    argv = ["scan", str(folder), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--no-progress"]) == 1  # two files failed
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = {Path(line["path"]).relative_to(folder).as_posix(): line for line in read_lines(out)}

    others = ["sub/copy.jpg", "sub/clip.mp4", "notes.txt", "cut.jpg"]
    assert sorted(lines) == sorted([*photos, *others])
    assert summary["listed"] == 8
    assert (summary["judged"], summary["duplicates"], summary["errors"]) == (5, 1, 2)
    assert summary["errors_by_code"] == {"invalid_image": 2}
    assert sum(summary["verdicts"].values()) == 5
    assert lines["notes.txt"]["error"]["code"] == "invalid_image"
    assert lines["cut.jpg"]["error"]["code"] == "invalid_image"
    # The copy is settled by its original's line (whichever path ended first).
    copies = [lines["p0.jpg"], lines["sub/copy.jpg"]]
    assert sorted(bool(c.get("duplicate")) for c in copies) == [False, True]
    video = lines["sub/clip.mp4"]
    assert (video["kind"], video["sha256"]) == ("video", sha(clip))
    assert video["frames_analysed"] > 0
    assert video["verdict"] in ("real", "fake", "inconclusive")

    # The verdicts are the service's for the same bytes.
    with serving(make_settings(tiny_checkpoint)) as client:
        for name in ("p1.jpg", "p2.jpg", "p3.jpg"):
            line = lines[name]
            assert (line["kind"], line["sha256"]) == ("image", sha(photos[name]))
            answer = client.post(
                "/infer",
                files={"file": (name, photos[name], "image/jpeg")},
                headers={"X-API-Key": API_KEY},
            ).json()
            assert line["verdict"] == answer["verdict"]
            assert line["fake_prob"] == pytest.approx(answer["fake_prob"], abs=1e-6)
            assert line["reasons"] == answer["reasons"]
            assert "request_id" not in line
            assert "timings_ms" not in line


def test_a_manifest_names_files_relative_to_itself_and_missing_ones_are_errors(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(jpeg_bytes(120, 90, seed=1))
    manifest = tmp_path / "list.txt"
    manifest.write_text("# leaked folder, part 1\nin/a.jpg\n\nin/gone.jpg\n")
    out = tmp_path / "r.jsonl"
    argv = ["scan", str(manifest), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--no-progress"]) == 1
    by_name = {Path(line["path"]).name: line for line in read_lines(out)}
    assert set(by_name) == {"a.jpg", "gone.jpg"}
    assert by_name["a.jpg"]["verdict"] in ("real", "fake", "inconclusive")
    assert by_name["gone.jpg"]["error"]["code"] == "unreadable"
    # Rerun: the judged file is skipped; the unreadable one (no content, no digest) is
    # tried again and fails again.
    assert main([*argv, "--no-progress"]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["skipped"], summary["judged"], summary["errors"]) == (1, 0, 1)


def test_a_target_that_is_neither_media_nor_a_manifest_is_refused(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    odd = tmp_path / "blob.bin"
    odd.write_bytes(bytes(range(256)) * 4)
    argv = ["scan", str(odd), "--out", str(tmp_path / "r.jsonl")]
    assert main([*argv, "--checkpoint", str(tiny_checkpoint), "--no-progress"]) == 2
    assert "neither an image, a video nor a manifest" in capsys.readouterr().err
    assert main(["scan", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.jsonl")]) == 2


def test_errors_of_the_moment_and_asked_for_retries_are_judged_again(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(120, 90, seed=i))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    out = tmp_path / "r.jsonl"
    argv = ["scan", str(folder), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    argv.append("--no-progress")
    assert main(argv) == 1
    lines = read_lines(out)
    # As if the service had been overloaded for file 0: its line says so.
    first = next(line for line in lines if line["path"].endswith("0.jpg"))
    rest = [line for line in lines if line is not first]
    first = {k: first[k] for k in ("path", "sha256", "kind")}
    first |= {"error": {"code": "overloaded", "message": "busy"}, "retry": True}
    out.write_text("".join(json.dumps(line) + "\n" for line in [*rest, first]))
    capsys.readouterr()

    assert main(argv) == 0  # only file 0 judged again; bad.jpg's error is its own
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["judged"], summary["skipped"], summary["errors"]) == (1, 3, 0)
    assert main([*argv, "--retry-errors"]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["judged"], summary["skipped"], summary["errors"]) == (0, 3, 1)


def test_a_scan_killed_with_sigkill_resumes_without_losing_or_redoing_a_file(
    tiny_checkpoint: Path, scan_env, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = {f"{i:03}.jpg": jpeg_bytes(240, 180, seed=100 + i) for i in range(60)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "veracity", "scan", str(folder), "--out", str(out)]
    command += ["--checkpoint", str(tiny_checkpoint), "--no-progress", "--in-flight", "2"]
    env = os.environ | scan_env
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if out.is_file() and out.read_text().count("\n") >= 10:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the scan ended before it could be killed"
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    done_before = out.read_text().count("\n")
    assert 10 <= done_before < len(photos)
    with out.open("a") as f:  # as if killed mid-line
        f.write('{"path": "' + str(folder / "000.jpg") + '", "sha256": "ab')

    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == done_before
    assert summary["judged"] == len(photos) - done_before
    lines = read_lines(out)  # the torn line is gone: every line parses
    assert Counter(Path(line["path"]).name for line in lines) == Counter(dict.fromkeys(photos, 1))
    for line in lines:
        assert line["sha256"] == sha(photos[Path(line["path"]).name])
        assert line["verdict"] in ("real", "fake", "inconclusive")


def test_a_copy_judged_after_its_original_still_gets_its_own_line(
    tiny_checkpoint: Path, scan_env, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = jpeg_bytes(120, 90, seed=5)
    (folder / "a.jpg").write_bytes(data)
    (folder / "b.jpg").write_bytes(data)
    out = folder / "results.jsonl"  # inside the scanned folder: not scanned itself
    argv = ["scan", str(folder), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--no-progress", "--in-flight", "1"]) == 0  # one at a time
    assert main([*argv, "--in-flight", "1"]) == 0  # resumed, with the progress bar
    a, b = read_lines(out)
    assert (Path(a["path"]).name, Path(b["path"]).name) == ("a.jpg", "b.jpg")
    assert "verdict" in a
    assert b == {"path": str(folder / "b.jpg"), "sha256": sha(data), "duplicate": True}


def test_on_a_local_ray_the_lines_are_the_in_process_scans(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    """Ray Data's actors judge the same files into the same lines (a local Ray of 2 CPUs:
    two actors of one CPU each), and a rerun on Ray resumes from the same file."""
    ray = pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(24):
        (folder / f"{i:02}.jpg").write_bytes(jpeg_bytes(160, 120, seed=300 + i))
    (folder / "clip.mp4").write_bytes(write_video(seconds=1.0))
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    base = ["scan", str(folder), "--checkpoint", str(tiny_checkpoint), "--no-progress"]
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main([*base, "--out", str(local)]) == 1

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*base, "--out", str(on_ray), "--ray", "local"]) == 1
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (summary["judged"], summary["errors"]) == (25, 1)
        by_path = {line["path"]: line for line in read_lines(local)}
        lines = read_lines(on_ray)
        assert len(lines) == len(by_path) == 26
        for line in lines:
            assert line == by_path[line["path"]]
        # Resumed on Ray: everything is done already (bad.png's error is its own).
        assert main([*base, "--out", str(on_ray), "--ray", "local"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (summary["skipped"], summary["judged"], summary["errors"]) == (26, 0, 0)
        assert len(read_lines(on_ray)) == 26
    finally:
        ray.shutdown()
