"""Edge inference runtime: execution providers, sessions over exported bundles, TensorRT engines."""
