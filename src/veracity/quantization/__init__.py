"""INT8: a checkpoint's ONNX graph quantised offline and checked against FP32."""
