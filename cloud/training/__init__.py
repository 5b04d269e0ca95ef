"""Cloud training of adapters + heads on a frozen base encoder (single process or DDP).

Public names: :class:`TrainConfig`, :class:`TrainResult`, :func:`train`.
"""

from cloud.training.config import TrainConfig, TrainResult
from cloud.training.trainer import train

__all__ = ["TrainConfig", "TrainResult", "train"]
