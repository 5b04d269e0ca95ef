"""The per-node reorder buffer: ordered messages that arrived ahead of a sequence gap.

Bounded twice: at most ``max_messages`` entries and at most ``max_bytes`` of decompressed bodies
(``sync_reorder_buffer_messages`` / ``sync_reorder_buffer_bytes``). When a message does not fit,
the entries farthest ahead are evicted if that makes room for it (it is nearer to being applied);
otherwise the message itself is refused. Either way nothing is acked for the message left out,
so the node resends it after its ack timeout — dropping costs time, never data.
"""

from __future__ import annotations

from contracts.envelope import Envelope

ENTRY_OVERHEAD = 512  # bytes an entry costs besides its body (envelope, header fields)


def entry_bytes(env: Envelope) -> int:
    return len(env.body) + ENTRY_OVERHEAD


class ReorderBuffer:
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: dict[int, Envelope] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, seq: int) -> bool:
        return seq in self._items

    def pop(self, seq: int) -> Envelope:
        env = self._items.pop(seq)
        self.bytes -= entry_bytes(env)
        return env

    def drop_below(self, seq: int) -> None:
        for s in [s for s in self._items if s < seq]:
            self.pop(s)

    def hold(self, env: Envelope) -> tuple[bool, int]:
        """Keep ``env`` until its turn; returns (held, entries evicted to make room). A message
        whose sequence number is held already is a resend: the held one stays."""
        if env.seq in self._items:
            return True, 0
        size = entry_bytes(env)
        if size > self.max_bytes:
            return False, 0
        farther = sorted((s for s in self._items if s > env.seq), reverse=True)
        count, total, evict = len(self._items), self.bytes, 0
        while (count >= self.max_messages or total + size > self.max_bytes) and evict < len(farther):
            total -= entry_bytes(self._items[farther[evict]])
            count -= 1
            evict += 1
        if count >= self.max_messages or total + size > self.max_bytes:
            return False, 0
        for s in farther[:evict]:
            self.pop(s)
        self._items[env.seq] = env
        self.bytes += size
        return True, evict
