"""Open Inference Protocol v2 HTTP front end of the edge inference service."""
