"""The closed learning loop: hard-example queue, labelled datasets, training jobs, the worker.

docs/arch/loop.md describes the states, the policy and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.loop.jobs import JobStore
from cloud.loop.queue import HardExampleQueue
from cloud.loop.settings import LoopSettings


@dataclass
class LoopServices:
    settings: LoopSettings
    queue: HardExampleQueue
    jobs: JobStore


__all__ = ["HardExampleQueue", "JobStore", "LoopServices", "LoopSettings"]
