"""Export settings (env prefix ``AUTOGLM_EXPORT_``, YAML section ``export``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.settings import AutoGLMSettings


class ExportSettings(AutoGLMSettings):
    """Defaults of ``autoglm export``: ONNX opset, parity limits and the int8 accuracy guard."""

    yaml_section: ClassVar[str] = "export"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_EXPORT_", extra="ignore")

    onnx_opset: int = Field(default=17, ge=14, description="ONNX opset of the exported graphs.")
    parity_max_abs_diff: float = Field(
        default=1e-4,
        gt=0,
        description="fp32 graph vs PyTorch: largest allowed absolute embedding difference.",
    )
    guard_min_route_agreement: float = Field(
        default=0.99, ge=0, le=1, description="int8 guard: share of route decisions that must equal fp32's."
    )
    guard_max_accuracy_drop: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="int8 guard: largest allowed drop in route accuracy vs fp32 (0.005 = 0.5 pt).",
    )
    guard_min_cosine_p1: float = Field(
        default=0.97,
        ge=-1,
        le=1,
        description="int8 guard: 1st percentile of int8-vs-fp32 embedding cosine must reach this.",
    )
    guard_min_eval_size: int = Field(
        default=200, ge=1, description="int8 guard: smallest evaluation set the guard accepts."
    )
    int8_target_mean_cosine: float = Field(
        default=0.995,
        ge=-1,
        le=1,
        description="int8 search goal: mean cosine to fp32 (keeps sensitive nodes in float until met).",
    )
    int8_target_cosine_p1: float = Field(
        default=0.98, ge=-1, le=1, description="int8 search goal: 1st-percentile cosine to fp32."
    )
    int8_max_float_nodes: int = Field(
        default=12, ge=0, description="int8 search: at most this many quantizable nodes are kept in float."
    )
    graph_heads_max_s: float = Field(
        default=1800,
        gt=0,
        description="--graph-heads (and the learning loop's heads): the export fails when training the "
        "graph heads runs longer than this (seconds; checked between embedding chunks and the two heads).",
    )
    graph_heads_path_questions: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="--graph-heads (and the learning loop's heads): training questions per question pattern "
        "and language for the path scorer; unset: the shipped size "
        "(cloud.training.hop_scorer.PATH_TRAIN_PER_PATTERN, chosen on the validation families).",
    )
    graph_heads_path_epochs: int | None = Field(
        default=None,
        ge=1,
        le=2000,
        description="--graph-heads (and the learning loop's heads): the path scorer's training epochs; "
        "unset: the shipped number (cloud.training.hop_scorer.PATH_TRAIN_EPOCHS).",
    )
    int8_agreement_margin: float = Field(
        default=0.003,
        ge=0,
        le=1,
        description="int8 search: keep nodes in float until calibration route agreement "
        ">= guard minimum + this.",
    )
    int8_sensitivity_samples: int = Field(
        default=96,
        ge=8,
        description="int8 search: queries used to measure each node's quantization sensitivity.",
    )
    int8_smooth_alpha: float = Field(
        default=0.75,
        ge=0,
        le=1,
        description="int8: SmoothQuant migration strength for activation outliers (0 disables smoothing).",
    )
    int8_calibration_samples: int = Field(
        default=1512,
        ge=8,
        description="int8: queries (validation split, not the guard's set) "
        "for smoothing statistics and search trials (1512: all of the default validation split; "
        "640 let a search pass that the guard then failed by one item).",
    )
    int8_rank_per_cost: bool = Field(
        default=True,
        description="int8 search: rank nodes to keep float by cosine loss per weight element "
        "(cheap sensitive nodes first: an FFN MatMul kept float costs ~4x an attention-output one), "
        "instead of by cosine loss alone.",
    )
    int8_quantize_embeddings: bool = Field(
        default=True,
        description="int8: store the word/position embedding tables as int8 too (about 4x smaller bundle).",
    )
    tensorrt_workspace_mb: int = Field(
        default=2048, ge=64, description="TensorRT builder workspace limit (MiB)."
    )
    tensorrt_max_batch: int = Field(
        default=32, ge=1, description="TensorRT optimisation profile: largest batch."
    )
