"""A scan's output: one JSON object per line, appended and flushed as each file ends, so a
scan killed at any moment (SIGKILL included) keeps every line it wrote but the one it was
writing. Reopened, the file is repaired (a torn last line is cut off) and read for what is
done: the SHA-256 of every file that has a line, verdict or error. A resumed scan skips
those by content, whatever their path now."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from veracity.errors import DatasetError


class ResultsFile:
    """The output file of one scan, opened for appending (``retry_errors``: the files whose
    line is an error are not counted as done, so a resumed scan judges them again)."""

    def __init__(self, path: Path, *, retry_errors: bool = False) -> None:
        self.path = path
        self.done: set[str] = set()
        self.resumed = 0  # lines found on opening
        if path.exists():
            self._read_back(retry_errors)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def _read_back(self, retry_errors: bool) -> None:
        _cut_torn_line(self.path)
        # Line by line: the output of a large scan does not fit in memory, its digests do
        # (about 100 bytes a file).
        with self.path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    record = json.loads(line)
                    digest = record["sha256"]
                except (ValueError, KeyError, TypeError) as e:
                    raise DatasetError(
                        f"{self.path}, line {number}: not a scan result; write to a new file "
                        "or remove the line"
                    ) from e
                self.resumed += 1
                if _is_done(record, retry_errors):
                    self.done.add(digest)

    def write(self, record: dict[str, Any]) -> None:
        """Append one file's line and hand it to the operating system (a process killed
        after this keeps it; ``close`` also syncs it to disk)."""
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        if _is_done(record, retry_errors=False):
            self.done.add(record["sha256"])

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _is_done(record: dict[str, Any], retry_errors: bool) -> bool:
    """Whether a line ends its file's scan: a verdict, or an error of the file's own (not one
    of the moment, marked ``retry``, nor a duplicate's line, which its original's settles)."""
    if record.get("sha256") is None or record.get("duplicate") or record.get("retry"):
        return False
    return not (retry_errors and "error" in record)


def _cut_torn_line(path: Path) -> None:
    """Cut what follows the last newline: the line being written when a scan was killed
    (its file is judged again)."""
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            chunk = f.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            f.truncate(end)
