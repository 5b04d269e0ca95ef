"""Fleet: node registry, credentials, live heartbeat state, commands to nodes."""
