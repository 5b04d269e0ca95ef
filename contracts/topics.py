"""The MQTT topic tree (wire format v1), under a configurable prefix (default ``autoglm``).

Topics are split by *direction* so that one broker ACL pattern per direction is enough
(``config/mosquitto/acl``: the node whose MQTT user name is ``%u`` may write only
``{prefix}/up/%u/#`` and read only ``{prefix}/down/%u/#`` plus the broadcasts)::

    {p}/up/{node}/heartbeat        node -> cloud   periodic metrics            QoS 0
    {p}/up/{node}/status           node -> cloud   "online"/"offline", RETAINED; the Last Will
    {p}/up/{node}/memory           node -> cloud   knowledge deltas (batched)  QoS 1, acked
    {p}/up/{node}/session          node -> cloud   shared session state        QoS 1, acked
    {p}/up/{node}/hard-examples    node -> cloud   hard examples               QoS 1, acked
    {p}/up/{node}/events           node -> cloud   telemetry events            QoS 1, acked
    {p}/up/{node}/priors           node -> cloud   graph-path feedback counts  QoS 1, acked
    {p}/up/{node}/ack              node -> cloud   acks for commands / memory broadcasts
    {p}/up/{node}/resync           node -> cloud   resync request (since an HLC)
    {p}/down/{node}/ack            cloud -> node   acks for the node's messages
    {p}/down/{node}/commands       cloud -> node   commands (desired model version ...)
    {p}/down/{node}/memory         cloud -> node   knowledge deltas for this node
    {p}/down/{node}/resync         cloud -> node   resync response (snapshot / deltas)
    {p}/down/{node}/priors         cloud -> node   fleet path priors (with a resync)
    {p}/fleet/commands             cloud -> all    fleet-wide commands
    {p}/fleet/memory               cloud -> all    shared knowledge broadcast
    {p}/fleet/priors               cloud -> all    fleet path priors (sums over nodes)
    {p}/groups/{group}/memory      cloud -> group  shared knowledge for a node group
    {p}/groups/{group}/commands    cloud -> group  group commands
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts.defaults import MQTT_TOPIC_PREFIX

CLOUD_SENDER = "cloud"  # the ``node`` of every envelope the cloud sends; no node may use it


class UpKind(StrEnum):
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    MEMORY = "memory"
    SESSION = "session"
    HARD_EXAMPLES = "hard-examples"
    EVENTS = "events"
    PRIORS = "priors"
    ACK = "ack"
    RESYNC = "resync"


class DownKind(StrEnum):
    ACK = "ack"
    COMMANDS = "commands"
    MEMORY = "memory"
    RESYNC = "resync"
    PRIORS = "priors"


_FORBIDDEN = set("/+#\x00")


def check_segment(name: str, what: str = "node id") -> str:
    """A node id / group name must be one non-empty topic level without wildcards."""
    if not name or any(c in _FORBIDDEN for c in name) or name.startswith("$") or len(name) > 128:
        raise ValueError(f"invalid {what} {name!r}: one topic level, no '/', '+', '#', leading '$'")
    return name


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    direction: str  # "up" | "down" | "fleet" | "groups"
    target: str  # node id, group name, or "" for fleet
    kind: str


@dataclass(frozen=True)
class Topics:
    prefix: str = MQTT_TOPIC_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in "+#\x00" for c in self.prefix) or self.prefix.endswith("/"):
            raise ValueError(f"invalid MQTT topic prefix {self.prefix!r}")

    # node -> cloud
    def up(self, node_id: str, kind: UpKind) -> str:
        return f"{self.prefix}/up/{check_segment(node_id)}/{kind.value}"

    def heartbeat(self, node_id: str) -> str:
        return self.up(node_id, UpKind.HEARTBEAT)

    def status(self, node_id: str) -> str:
        return self.up(node_id, UpKind.STATUS)

    def memory_up(self, node_id: str) -> str:
        return self.up(node_id, UpKind.MEMORY)

    def hard_examples(self, node_id: str) -> str:
        return self.up(node_id, UpKind.HARD_EXAMPLES)

    def events(self, node_id: str) -> str:
        return self.up(node_id, UpKind.EVENTS)

    def up_ack(self, node_id: str) -> str:
        return self.up(node_id, UpKind.ACK)

    def resync_request(self, node_id: str) -> str:
        return self.up(node_id, UpKind.RESYNC)

    # cloud -> node
    def down(self, node_id: str, kind: DownKind) -> str:
        return f"{self.prefix}/down/{check_segment(node_id)}/{kind.value}"

    def down_ack(self, node_id: str) -> str:
        return self.down(node_id, DownKind.ACK)

    def commands(self, node_id: str) -> str:
        return self.down(node_id, DownKind.COMMANDS)

    def memory_down(self, node_id: str) -> str:
        return self.down(node_id, DownKind.MEMORY)

    def resync_response(self, node_id: str) -> str:
        return self.down(node_id, DownKind.RESYNC)

    # broadcasts
    def fleet(self, kind: DownKind) -> str:
        return f"{self.prefix}/fleet/{kind.value}"

    def group(self, group: str, kind: DownKind) -> str:
        return f"{self.prefix}/groups/{check_segment(group, 'group')}/{kind.value}"

    # subscriptions
    def node_subscriptions(self, node_id: str, group: str | None = None) -> list[str]:
        subs = [f"{self.prefix}/down/{check_segment(node_id)}/#", f"{self.prefix}/fleet/#"]
        if group:
            subs.append(f"{self.prefix}/groups/{check_segment(group, 'group')}/#")
        return subs

    def cloud_subscriptions(self) -> list[str]:
        return [f"{self.prefix}/up/+/#"]

    def parse(self, topic: str) -> ParsedTopic | None:
        """Split a topic of this tree; ``None`` for anything else."""
        if not topic.startswith(self.prefix + "/"):
            return None
        parts = topic[len(self.prefix) + 1 :].split("/")
        if parts[0] in ("up", "down", "groups") and len(parts) == 3:
            return ParsedTopic(parts[0], parts[1], parts[2])
        if parts[0] == "fleet" and len(parts) == 2:
            return ParsedTopic("fleet", "", parts[1])
        return None
