"""The OpenAPI examples of the answer contract (``answers.py``): what Swagger shows for
POST /infer, a plain answer, an inconclusive one, one with an explanation, and one whose
content credentials declare it AI-generated."""

from __future__ import annotations

from typing import Any

INFER_EXAMPLE: dict[str, Any] = {
    "request_id": "5f0c7a6e2b9d4c1e8a3f6b7d9e0a1c2b",
    "fake_prob": 0.0213,
    "real_prob": 0.9787,
    "label": "real",
    "verdict": "real",
    "reasons": [],
    "calibrated": True,
    "calibration_version": 1,
    "thresholds": {"real": 0.25, "fake": 0.75},
    "ood_score": 0.41,
    "quality": {"width": 1280, "height": 720, "jpeg_quality": 92, "content_std": 48.3},
    "stability": None,
    "model_name": "veracity-demo",
    "model_version": "2.0.0",
    "timings_ms": {"preprocess": 6.1, "inference": 21.4},
    "batch_size": 1,
    "provenance": {"present": False},
    "model_verdict": "real",
}
INCONCLUSIVE_EXAMPLE: dict[str, Any] = INFER_EXAMPLE | {
    "fake_prob": 0.9312,
    "real_prob": 0.0688,
    "label": "fake",
    "verdict": "inconclusive",
    "reasons": [
        {
            "code": "out_of_distribution",
            "message": "the image is unlike anything this model was trained on (distance "
            "3.70x the largest seen on its validation data); its probability does not "
            "apply here.",
        }
    ],
    "ood_score": 3.7,
    "model_verdict": "inconclusive",
}
DECLARED_AI_EXAMPLE: dict[str, Any] = INCONCLUSIVE_EXAMPLE | {
    "verdict": "fake",
    "reasons": [
        *INCONCLUSIVE_EXAMPLE["reasons"],
        {
            "code": "declared_ai_generated",
            "message": "the file's content credentials, signed by Example AI Co, declare it "
            "trainedAlgorithmicMedia (made by generative AI).",
            "action": "Label it as AI-generated: its maker's signed credentials say so.",
        },
    ],
    "provenance": {
        "present": True,
        "state": "valid_untrusted",
        "codes": [],
        "signer": {"organization": "Example AI Co", "common_name": "Image Service"},
        "claim_generator": "image-service 2.1",
        "created": "2026-11-30T08:14:03Z",
        "actions": ["c2pa.created"],
        "digital_source_type": "trainedAlgorithmicMedia",
        "ingredients": [],
        "ingredients_total": 0,
        "remote_url": None,
    },
}


EXPLAINED_EXAMPLE: dict[str, Any] = INFER_EXAMPLE | {
    "fake_prob": 0.9421,
    "real_prob": 0.0579,
    "label": "fake",
    "verdict": "fake",
    "explanation": {
        "method": "patch_probabilities",
        "grid": [
            [0.0412, 0.0388, 0.0521, 0.0466],
            [0.0397, 0.9713, 0.8842, 0.0503],
            [0.0455, 0.9105, 0.6237, 0.0481],
            [0.0430, 0.0472, 0.0509, 0.0444],
        ],
        "reason": None,
    },
}
