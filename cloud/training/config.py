"""Training configuration and result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.settings import data_dir

# Fields that do not change what is trained (where it goes, how it is run).
_RUN_ONLY_FIELDS = {"out_dir", "resume", "stop_after_epochs", "num_threads"}


class TrainConfig(BaseModel):
    """Everything that defines one training run (stored in the checkpoint under ``training.config``)."""

    model_config = ConfigDict(extra="forbid")

    base_path: Path | None = Field(
        None, description="Base encoder directory (HF layout); default: the bundled all-MiniLM-L6-v2"
    )
    out_dir: Path = Field(
        default_factory=lambda: data_dir() / "checkpoint", description="Checkpoint directory"
    )
    adapter_set: str = Field("default", description="Name of the adapter set to train")
    bottleneck: int = Field(64, ge=1, description="Adapter bottleneck width")
    epochs: int = Field(6, ge=1, description="Maximum number of epochs")
    batch_size: int = Field(32, ge=1, description="Global batch size (split across DDP ranks)")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW, linear warm-up and decay)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps used for linear warm-up")
    seed: int = Field(0, description="Seed for data generation, initialisation, shuffling and dropout")
    max_length: int = Field(64, ge=8, description="Maximum tokens per text (longer texts are truncated)")
    patience: int = Field(2, ge=1, description="Early stopping: epochs without validation improvement")
    data_train: Path | None = Field(
        None, description="User training data (JSONL); default: the bundled generator"
    )
    data_val: Path | None = Field(
        None, description="User validation data (JSONL); default: 10% of data_train"
    )
    data_test: Path | None = Field(None, description="User test data (JSONL); default: the validation data")
    train_per_template: int = Field(30, ge=1, description="Generator: training examples per template")
    eval_per_template: int = Field(12, ge=1, description="Generator: validation/test examples per template")
    resume: bool = Field(False, description="Continue an interrupted run from out_dir/train_state.pt")
    tiny: bool = Field(False, description="Tests: tiny random encoder (built under out_dir) and little data")
    stop_after_epochs: int | None = Field(
        None, description="Tests: stop after this many epochs, as if interrupted"
    )
    num_threads: int | None = Field(
        None, description="torch intra-op threads per process (default: cores / ranks)"
    )

    def identity(self) -> dict[str, Any]:
        """The fields that define the trained result (for reuse checks and the checkpoint)."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in _RUN_ONLY_FIELDS}

    def identity_sha256(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()


@dataclass
class TrainResult:
    checkpoint_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    finished: bool = True
    wall_s: float = 0.0
    routes: list[str] = field(default_factory=list)
