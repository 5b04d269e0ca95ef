"""The one error a demo stage raises: it names the stage and the problem (the CLI exits non-zero)."""

from __future__ import annotations


class StageFailed(RuntimeError):
    def __init__(self, stage: str, problem: str) -> None:
        super().__init__(f"stage {stage!r} failed: {problem}")
        self.stage = stage
        self.problem = problem
