"""Turning a model's scores into an honest verdict.

- ``calibration``: scores -> calibrated probabilities (temperature or Platt scaling), ECE;
- ``ood``: how far an input's features are from what the model was trained on;
- ``quality``: input-quality gates (resolution, JPEG quality, content);
- ``decision``: probabilities + gate reasons -> ``real``, ``fake`` or ``inconclusive``;
- ``robustness``: the re-encode and half-size self-check.
"""
