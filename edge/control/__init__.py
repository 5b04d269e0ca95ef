"""Edge control plane: the node's side of the cloud's commands (desired version, traffic split),
content-addressed bundle downloads, last-known-good, and the heartbeat provider."""
