"""The rollout state machine: states, phases and the only transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum

from contracts.errors import Conflict


class RolloutState(StrEnum):
    PENDING = "pending"  # created, not started
    PROGRESSING = "progressing"  # a step is applying or baking
    PAUSED = "paused"  # waiting for a person (manual pause or inconclusive analysis)
    SUCCEEDED = "succeeded"  # every matching node runs the version; stable alias moved
    ABORTED = "aborted"  # stopped; canary nodes sent back to the stable version


class StepPhase(StrEnum):
    APPLYING = "applying"  # desired version sent to this step's nodes; waiting for them to run it
    BAKING = "baking"  # all applied; collecting edge metrics for ``pause_s``


TERMINAL: frozenset[RolloutState] = frozenset({RolloutState.SUCCEEDED, RolloutState.ABORTED})

TRANSITIONS: dict[RolloutState, frozenset[RolloutState]] = {
    RolloutState.PENDING: frozenset({RolloutState.PROGRESSING, RolloutState.ABORTED}),
    # PROGRESSING -> PROGRESSING is a step advance (stored like every other transition).
    RolloutState.PROGRESSING: frozenset(
        {RolloutState.PROGRESSING, RolloutState.PAUSED, RolloutState.SUCCEEDED, RolloutState.ABORTED}
    ),
    RolloutState.PAUSED: frozenset({RolloutState.PROGRESSING, RolloutState.ABORTED}),
    RolloutState.SUCCEEDED: frozenset(),
    RolloutState.ABORTED: frozenset(),
}


def check_transition(src: RolloutState, dst: RolloutState) -> None:
    if dst not in TRANSITIONS[src]:
        raise Conflict(f"rollout cannot go from {src.value} to {dst.value}")
