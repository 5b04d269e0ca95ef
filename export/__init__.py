"""Export pipeline: checkpoint -> ONNX / TensorRT bundle (quantised, signed, verified)."""
