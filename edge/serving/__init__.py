"""Edge serving core: tokenisation, dynamic batching, result cache, model slots, the inference service."""
