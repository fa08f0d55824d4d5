"""The naive design the service replaces, for the benchmark's baseline.

What the older service did: the model runs inside the request handler, one image at a time,
on the event loop; the image is fully decoded and goes through timm's own (torchvision) eval
transform. Same checkpoint, same port contract (`POST /infer`, multipart field `file`).
Run only by bench/run.py, on loopback.
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
from veracity.models import reference_eval_transform


def create_naive_app(checkpoint_path: Path) -> FastAPI:
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.model.eval()
    transform = reference_eval_transform(checkpoint.preprocess)
    app = FastAPI()

    @app.post("/infer")
    async def infer(file: UploadFile = File(...)) -> dict[str, float]:  # noqa: B008 - FastAPI idiom
        image = Image.open(io.BytesIO(await file.read())).convert("RGB")
        with torch.inference_mode():
            probs = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
        return {"real_prob": float(probs[0]), "fake_prob": float(probs[1])}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


if __name__ == "__main__":
    checkpoint, port = Path(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(create_naive_app(checkpoint), host="127.0.0.1", port=port, log_level="warning")
