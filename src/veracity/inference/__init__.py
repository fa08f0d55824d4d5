"""The model itself: preprocessing, forward passes on PyTorch or ONNX Runtime, probabilities."""
