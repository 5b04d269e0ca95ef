"""Edge agent: ONNX Runtime inference server, MQTT sync, reasoning agent. Never imports torch."""
