"""`veracity scan`: a folder, a manifest or one file judged into JSONL with the service's own
verdicts, every file a line (verdict, duplicate or error), resumable after SIGKILL without
judging a file twice or losing one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred generated files: JPEG, PNG and WebP photos of several sizes, H.264 and
    VP9 clips, and files no decoder accepts (each must get its own error line)."""
    folder = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(11)
    for i in range(270):
        width, height = (160, 120) if i % 2 else (120, 160)
        if i % 3 == 0:
            (folder / f"photos/{i:03}.jpg").parent.mkdir(exist_ok=True)
            (folder / f"photos/{i:03}.jpg").write_bytes(jpeg_bytes(width, height, seed=1000 + i))
            continue
        pixels = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        encoded = io.BytesIO()
        kind = "png" if i % 3 == 1 else "webp"
        picture.save(encoded, format=kind.upper())
        (folder / f"photos/{i:03}.{kind}").write_bytes(encoded.getvalue())
    (folder / "clips").mkdir()
    for i, codec in enumerate(["libx264"] * 4 + ["libvpx-vp9"] * 2):
        container = "mp4" if codec == "libx264" else "mkv"
        clip = write_video(codec=codec, container=container, seconds=1.0, width=128 + 16 * i)
        (folder / f"clips/{i}.{container}").write_bytes(clip)
    (folder / "broken").mkdir()
    (folder / "broken/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "broken/empty.jpg").write_bytes(b"")
    clip = (folder / "clips/0.mp4").read_bytes()
    (folder / "broken/cut.mp4").write_bytes(clip[: len(clip) // 3])
    return folder


ARCHIVE_FILES, ARCHIVE_ERRORS = 279, 3


def test_a_few_hundred_files_on_a_local_ray_get_the_in_process_lines_and_records(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys, archive: Path
) -> None:
    """Ray Data's actors judge the same files into the same lines (a local Ray of 2 CPUs:
    two actors of one CPU each), record them in the store as the service would (--store),
    and a rerun on Ray resumes from the same file."""
    ray = pytest.importorskip("ray")
    base = ["scan", str(archive), "--checkpoint", str(tiny_checkpoint), "--no-progress"]
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert main([*base, "--out", str(local)]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["judged"], summary["errors"]) == (ARCHIVE_FILES - 3, ARCHIVE_ERRORS)
    by_path = {line["path"]: line for line in read_lines(local)}
    assert sum(line.get("kind") == "video" and "verdict" in line for line in by_path.values()) == 6
    errors = {Path(p).name: line["error"]["code"] for p, line in by_path.items() if "error" in line}
    assert set(errors) == {"bad.png", "empty.jpg", "cut.mp4"}

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*base, "--out", str(on_ray), "--ray", "local", "--store"]) == 1
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (summary["judged"], summary["errors"]) == (ARCHIVE_FILES - 3, ARCHIVE_ERRORS)
        lines = read_lines(on_ray)
        assert len(lines) == len(by_path) == ARCHIVE_FILES
        for line in lines:
            stored = line.pop("prediction_id", None)
            expected = {k: v for k, v in by_path[line["path"]].items() if k != "prediction_id"}
            assert line == expected
            assert (stored is None) == ("error" in line)
        # Resumed on Ray: everything is done already (the errors are the files' own).
        assert main([*base, "--out", str(on_ray), "--ray", "local"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (summary["skipped"], summary["judged"], summary["errors"]) == (ARCHIVE_FILES, 0, 0)
        assert len(read_lines(on_ray)) == ARCHIVE_FILES
    finally:
        ray.shutdown()
    # Every verdict was recorded once, by the actors, as the service records one.
    with sqlite3.connect(Path(scan_env["VERACITY_DATA_DIR"]) / "veracity.db") as db:
        rows = dict(db.execute("SELECT id, verdict FROM predictions").fetchall())
    assert len(rows) == ARCHIVE_FILES - ARCHIVE_ERRORS
    for line in read_lines(on_ray):
        if "verdict" in line:
            assert rows[line["prediction_id"]] == line["verdict"]


def test_with_the_store_a_scan_records_as_the_service_does_and_reuses_its_answers(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = {f"{i}.jpg": jpeg_bytes(160, 120, seed=500 + i) for i in range(5)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    (folder / "clip.mp4").write_bytes(write_video(seconds=1.0))
    base = ["scan", str(folder), "--checkpoint", str(tiny_checkpoint), "--no-progress", "--store"]
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert main([*base, "--out", str(first)]) == 0
    assert main([*base, "--out", str(second)]) == 0  # a new output: nothing is "done"
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["judged"], summary["from_store"]) == (6, 6)
    before = {line["path"]: line for line in read_lines(first)}
    for line in read_lines(second):
        assert line.pop("from_store") is True
        assert line == before[line["path"]]
    # The records are the service's: an admin reads them over the API like any other.
    settings = make_settings(
        tiny_checkpoint, data_dir=scan_env["VERACITY_DATA_DIR"], admin_api_keys="admin-" + "k" * 24
    )
    with serving(settings) as client:
        for line in before.values():
            response = client.get(
                f"/predictions/{line['prediction_id']}", headers={"X-API-Key": "admin-" + "k" * 24}
            )
            assert response.status_code == 200, response.text
            stored = response.json()
            assert (stored["verdict"], stored["input_sha256"]) == (line["verdict"], line["sha256"])


def _actor_pids() -> list[int]:
    """The processes of Ray Data's scan actors (their titles name the map operator)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapBatches(_Actor)" in title:
                pids.append(int(entry.name))
    return pids


def test_a_ray_worker_lost_mid_scan_has_its_files_judged_again(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    ray = pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    photos = {f"{i:03}.jpg": jpeg_bytes(320, 240, seed=700 + i) for i in range(160)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "ray.jsonl"
    killed: list[int] = []

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pids = _actor_pids()
            written = out.read_text().count("\n") if out.is_file() else 0
            if pids and written >= 16:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(written)
                return
            time.sleep(0.05)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    killer = threading.Thread(target=kill_one_actor, daemon=True)
    try:
        killer.start()
        argv = ["scan", str(folder), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
        assert main([*argv, "--no-progress", "--ray", "local"]) == 0
        killer.join(timeout=10)
    finally:
        ray.shutdown()
    assert killed, "no actor was killed: the scan ended first"
    assert killed[0] < len(photos), "the actor was killed after the last file"
    # The last JSON line: Ray's raylet may print after it (the actor's retried calls).
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(next(line for line in reversed(printed) if line.startswith("{")))
    assert (summary["judged"], summary["errors"]) == (len(photos), 0)
    lines = read_lines(out)
    assert Counter(Path(line["path"]).name for line in lines) == Counter(dict.fromkeys(photos, 1))


def test_a_manifest_may_name_uris_that_the_workers_read(
    tiny_checkpoint: Path, scan_env, tmp_path: Path, capsys
) -> None:
    """URIs in a manifest are read through PyArrow's file systems (file:// here; s3://,
    gs://, hdfs:// on a cluster that reaches them), in-process and by Ray's actors alike;
    a URI no file system reads is that file's error line."""
    pytest.importorskip("pyarrow")
    ray = pytest.importorskip("ray")
    folder = tmp_path / "bucket"
    folder.mkdir()
    photos = {f"{i}.jpg": jpeg_bytes(160, 120, seed=900 + i) for i in range(4)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    manifest = tmp_path / "list.txt"
    entries = [(folder / "0.jpg").as_uri(), (folder / "1.jpg").as_uri(), "bucket/2.jpg"]
    manifest.write_text("\n".join([*entries, (folder / "3.jpg").as_uri(), "nope://b/4.jpg"]))
    base = ["scan", "--checkpoint", str(tiny_checkpoint), "--no-progress"]
    direct, listed, on_ray = (tmp_path / n for n in ("direct.jsonl", "m.jsonl", "ray.jsonl"))
    assert main([*base, str(folder), "--out", str(direct)]) == 0
    assert main([*base, str(manifest), "--out", str(listed)]) == 1  # the nope:// line
    by_digest = {line["sha256"]: line for line in read_lines(direct)}
    lines = {line["path"]: line for line in read_lines(listed)}
    uris = {entries[0], entries[1], (folder / "3.jpg").as_uri()}
    assert set(lines) == uris | {str(folder / "2.jpg"), "nope://b/4.jpg"}
    error = lines.pop("nope://b/4.jpg")["error"]
    assert error["code"] == "unreadable"
    assert "nope://b/4.jpg" in error["message"]
    for path, line in lines.items():
        assert line | {"path": None} == by_digest[line["sha256"]] | {"path": None}, path
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*base, str(manifest), "--out", str(on_ray), "--ray", "local"]) == 1
    finally:
        ray.shutdown()
    assert {line["path"]: line for line in read_lines(on_ray)} == {
        line["path"]: line for line in read_lines(listed)
    }
