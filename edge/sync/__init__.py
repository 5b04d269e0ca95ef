"""Edge <-> cloud sync over MQTT: outbox, connection, heartbeats, commands, KubeEdge twin.

Entry point: :class:`edge.sync.agent.EdgeSync`. Wire formats live in ``contracts.envelope`` and
``contracts.topics``.
"""
