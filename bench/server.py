"""A real `veracity serve` process (or the naive baseline) on a free loopback port, for the
load scripts: started with its own settings, polled until ready, watched, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

API_KEY = "bench-key-0123456789abcdef"
BOUNDARY = "veracitybenchboundary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart(data: bytes) -> bytes:
    """An /infer request body carrying ``data`` as the file part (boundary ``BOUNDARY``)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_infer(
    client: httpx.Client, image: bytes, params: dict[str, str] | None = None
) -> tuple[float, httpx.Response]:
    """One POST /infer of ``image`` (as photo.jpg): the client's latency in ms, and the
    response."""
    started = time.perf_counter()
    response = client.post(
        "/infer",
        params=params,
        files={"file": ("photo.jpg", image, "image/jpeg")},
        headers={"X-API-Key": API_KEY},
    )
    return 1000 * (time.perf_counter() - started), response


class Server:
    """``env`` overrides the defaults below; the process runs in ``log``'s folder, so no
    stray ``.env`` is read, in its own process group. ``command`` runs another server (a
    peer's) instead, given the port as its last argument, and ready when ``ready_path``
    answers 200."""

    def __init__(
        self,
        checkpoint: Path,
        env: dict[str, str],
        log: Path,
        *,
        naive: bool = False,
        command: list[str] | None = None,
        ready_path: str = "/ready",
    ) -> None:
        self.port = free_port()
        self.log = log
        self.ready_path = ready_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VERACITY_")}
        full_env |= {
            "VERACITY_API_KEYS": API_KEY,
            "VERACITY_CHECKPOINT": str(checkpoint.resolve()),
            "VERACITY_HOST": "127.0.0.1",
            "VERACITY_PORT": str(self.port),
            "VERACITY_LOG_LEVEL": "WARNING",
        } | env
        if command is not None:
            argv = [*command, str(self.port)]
        elif naive:
            argv = [
                sys.executable,
                str(Path(__file__).with_name("naive_server.py")),
                str(checkpoint.resolve()),
                str(self.port),
            ]
        else:
            argv = [sys.executable, "-m", "veracity", "serve"]
        with log.open("w") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=log.parent,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        headers = {"X-API-Key": API_KEY}  # LitServe checks it on /health too
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited during startup:\n{self.log.read_text()}")
            try:
                answer = httpx.get(self.url + self.ready_path, headers=headers, timeout=2)
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout:g} s:\n{self.log.read_text()}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS for the server process")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process, all its threads (from /proc); of one of its
    threads with ``tid``."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_loop(
    url: str, images: bytes | list[bytes], clients: int, seconds: float
) -> dict[str, float]:
    """``clients`` threads posting to /infer back to back for ``seconds`` (each cycling
    through ``images``, so distinct uploads stay distinct): answers per second, latency
    percentiles of the successful ones, and failures."""
    uploads = [images] if isinstance(images, bytes) else images
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(first: int) -> None:
        nonlocal failures
        with httpx.Client(base_url=url, timeout=60) as http:
            n = first
            while time.perf_counter() < deadline:
                elapsed_ms, response = post_infer(http, uploads[n % len(uploads)])
                n += clients
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed_ms / 1000)
                    else:
                        failures += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "answered": len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "failures": failures,
    }
