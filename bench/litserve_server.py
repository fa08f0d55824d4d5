"""A peer for bench/throughput.py: the same work per image served by LitServe.

LitServe (Lightning AI's inference server) in its default process model on CPU: one API
server process that parses HTTP and the multipart form, and one inference worker process
(one per device; the CPU is one device) that decodes each request, batches them and runs
the model, joined by queues. Its own dynamic batching (up to 8 images, ``batch_timeout``
2 ms: veracity's defaults) stands where veracity's micro-batcher does.

The work per image is veracity's own, not a re-implementation: the upload goes through
``Predictor.prepare`` (decode, the quality measurements, the 16 native-resolution patches),
and the batch through ``Predictor.predict`` on the same ONNX Runtime graph veracity serves
from the same export cache (pooling, calibration and the distance gate included). What
LitServe does not do is veracity's service work: no store, no "seen before" hash, no
request logs, no verdict. Its answer is ``{"fake_prob": ...}``.

ONNX Runtime and torch get one intra-op thread per available CPU: the worker is alone on
the machine's cores, as LitServe deploys it. Its uvicorn runs with uvicorn's defaults
(uvloop and httptools, which LitServe's dependencies install).

`POST /infer` (multipart field ``file``, ``X-API-Key`` checked by LitServe, as veracity
checks it); `GET /health` is 200 once the worker is set up. Run only by
bench/throughput.py, on loopback:

    python bench/litserve_server.py CHECKPOINT EXPORT_DIR PORT
"""

# No `from __future__ import annotations` here: LitServe reads decode_request's annotation
# at run time to know what the endpoint takes (a string would not be starlette's Request).
import os
import sys
from pathlib import Path

import litserve as ls
import torch
from starlette.requests import Request

from veracity.checkpoint import load_checkpoint
from veracity.cpus import available_cpus
from veracity.inference.predictor import Predictor, create_predictor


class VeracityAPI(ls.LitAPI):
    def __init__(self, checkpoint: Path, export_dir: Path) -> None:
        super().__init__(max_batch_size=8, batch_timeout=0.002, api_path="/infer")
        self.checkpoint = checkpoint
        self.export_dir = export_dir
        self.predictor: Predictor | None = None

    def setup(self, device: str) -> None:
        threads = available_cpus()
        # torch's default counts the host's cores, not the container's quota.
        torch.set_num_threads(threads)
        self.predictor = create_predictor(
            load_checkpoint(self.checkpoint),
            torch.device("cpu"),
            backend="onnx",
            export_dir=self.export_dir,
            threads=threads,
        )

    def _ready(self) -> Predictor:
        if self.predictor is None:
            raise RuntimeError("setup has not run")
        return self.predictor

    def decode_request(self, request: Request) -> torch.Tensor:
        # The endpoint takes the raw Request; the API server parses its form and the worker
        # gets that (starlette FormData, the file held in memory), as LitServe documents.
        data = request["file"].file.read()
        return self._ready().prepare(data, robustness_check=False).tensor

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> list[float]:
        return [p.fake_prob for p in self._ready().predict(x)]

    def unbatch(self, output: list[float]) -> list[float]:
        return output

    def encode_response(self, output: float) -> dict[str, float]:
        return {"fake_prob": output}


def main() -> None:
    checkpoint, export_dir, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    server = ls.LitServer(VeracityAPI(checkpoint, export_dir), accelerator="cpu", timeout=30)
    server.run(
        host="127.0.0.1",
        port=port,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    if "LIT_SERVER_API_KEY" not in os.environ:
        sys.exit("litserve_server: set LIT_SERVER_API_KEY (the bench's API key)")
    main()
