"""The naive design the service replaces, for the benchmark's baseline.

What the older service did: the model runs inside the request handler, one image at a time,
on the event loop; the image is fully decoded and goes through timm's own (torchvision) eval
transform. Same checkpoint, same port contract (`POST /infer`, multipart field `file`).
Run only by the benches (bench/run.py; bench/throughput.py with ``--onnx``), on loopback.

A patches checkpoint (the synthetic model's 16 native-resolution patches) reads the
project's patch grid and pools the patches' logits as it asks: timm's transform would feed
it one downscaled crop, a sixteenth of the model's work and a different answer, and the
comparison is of the serving design, not of less work.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from veracity.checkpoint import load_checkpoint
from veracity.inference.predictor import create_predictor
from veracity.models import reference_eval_transform
from veracity.preprocess import ImageTransform, pool_patch_logits


def create_naive_app(checkpoint_path: Path) -> FastAPI:
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.model.eval()
    config = checkpoint.preprocess
    if config.mode == "patches":
        patches = ImageTransform(config)
        fake = checkpoint.metadata.class_names.index("fake")

        def forward(image: Image.Image) -> torch.Tensor:
            logits = model(patches(image))
            return pool_patch_logits(logits, logits.shape[0], config.patch_pooling, fake)[0]
    else:
        transform = reference_eval_transform(config)

        def forward(image: Image.Image) -> torch.Tensor:
            return model(transform(image).unsqueeze(0))[0]

    app = FastAPI()

    @app.post("/infer")
    async def infer(file: UploadFile = File(...)) -> dict[str, float]:  # noqa: B008 - FastAPI idiom
        image = Image.open(io.BytesIO(await file.read())).convert("RGB")
        with torch.inference_mode():
            probs = torch.softmax(forward(image), dim=0)
        return {"real_prob": float(probs[0]), "fake_prob": float(probs[1])}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def create_naive_onnx_app(checkpoint_path: Path, export_dir: Path) -> FastAPI:
    """The naive design on the graph veracity serves (ONNX Runtime, its default threads):
    the same decoding, patches and forward pass per image as veracity and LitServe in
    bench/throughput.py, run synchronously in the handler, one request at a time."""
    predictor = create_predictor(
        load_checkpoint(checkpoint_path), torch.device("cpu"), backend="onnx", export_dir=export_dir
    )
    app = FastAPI()

    @app.post("/infer")
    async def infer(file: UploadFile = File(...)) -> dict[str, float]:  # noqa: B008 - FastAPI idiom
        prepared = predictor.prepare(await file.read(), robustness_check=False)
        prediction = predictor.predict(prepared.inputs)[0]
        return {"real_prob": prediction.real_prob, "fake_prob": prediction.fake_prob}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


if __name__ == "__main__":
    # CHECKPOINT [--onnx EXPORT_DIR] PORT
    checkpoint, port = Path(sys.argv[1]), int(sys.argv[-1])
    if sys.argv[2] == "--onnx":
        app = create_naive_onnx_app(checkpoint, Path(sys.argv[3]))
    else:
        app = create_naive_app(checkpoint)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
