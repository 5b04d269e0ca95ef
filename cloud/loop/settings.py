"""Learning-loop settings (env prefix ``AUTOGLM_CLOUD_``, YAML section ``cloud``, fields ``loop_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.settings import AutoGLMSettings


class LoopSettings(AutoGLMSettings):
    """The hard-example queue, the training worker and the promotion policy."""

    yaml_section: ClassVar[str] = "cloud"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_CLOUD_", extra="ignore", validate_default=True)

    loop_model: str = Field(
        default="autoglm-router", description="Model whose stable version judges (triages) the hard examples."
    )
    loop_merge_similarity: float = Field(
        default=0.92,
        gt=0,
        le=1,
        description="Cosine similarity (full-precision model embeddings) at which a new hard example is "
        "merged into an existing queue item as a near-duplicate.",
    )
    loop_max_items: int = Field(
        default=20000,
        ge=10,
        description="Queue items searched for near-duplicates (the newest this many).",
    )
    loop_auto_approve: bool = Field(
        default=False,
        description="Approve suggested labels without a person when both the model and the cloud tool agree "
        "and the model's confidence is at least loop_auto_approve_min_confidence (the demo turns it on).",
    )
    loop_auto_approve_min_confidence: float = Field(
        default=0.9, ge=0, le=1, description="Smallest model confidence an auto-approved suggestion may have."
    )
    loop_auto_approve_any_source: bool = Field(
        default=False,
        description="Auto-approve a suggestion from one source alone (model or cloud tool), not only "
        "when both agree (demo policy).",
    )
    loop_auto_approve_user: bool = Field(
        default=False,
        description="With loop_auto_approve: also approve a route users named when they rejected an "
        "answer (suggestion source user, POST /v1/feedback on the edge with the edge admin token), "
        "whatever the model says (the demo turns it on).",
    )
    loop_auto_job_min_labelled: int = Field(
        default=0,
        ge=0,
        description="The worker queues a job by itself once this many labelled examples form a dataset no "
        "job has tried yet, and no job is queued or running (0: jobs only on request; an operator's cancel "
        "pauses it).",
    )
    loop_min_gain_pt: float = Field(
        default=5.0,
        description="Promotion policy: the new version must gain at least this many accuracy points on the "
        "labelled hard-example set (else the job fails before registration).",
    )
    loop_max_regression_pt: float = Field(
        default=1.0,
        ge=0,
        description="Promotion policy: largest accuracy drop in points allowed on the frozen evaluation set.",
    )
    loop_train_steps: int = Field(default=120, ge=1, description="Optimiser steps of one loop job.")
    loop_train_lr: float = Field(
        default=5e-4, gt=0, description="Learning rate of the warm-started fine-tune."
    )
    loop_train_batch_size: int = Field(default=32, ge=2, description="Batch size of the fine-tune.")
    loop_distill_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of the distillation term on the base rows of every batch: "
        "T^2 * KL(parent || new) on the parent's logits (computed once), so rehearsal keeps the old "
        "answers, not just the labels "
        "(0: off; chosen on the dev protocol of docs/EVALUATION.md, 'Loop fine-tune: distillation').",
    )
    loop_distill_temperature: float = Field(
        default=2.0, gt=0, description="Softmax temperature of the distillation term."
    )
    loop_base_samples: int = Field(
        default=2000, ge=0, description="Examples of the base training data mixed into every job (rehearsal)."
    )
    loop_hard_share: float = Field(
        default=0.25, gt=0, lt=1, description="Share of each batch drawn from the labelled hard examples."
    )
    loop_eval_max: int = Field(
        default=0, ge=0, description="Cap on the frozen evaluation set's size per job (0: all of it)."
    )
    loop_seed: int = Field(default=0, description="Seed of the fine-tune's sampling and dropout.")
    loop_checkpoint_dirs: list[Path] = Field(
        default_factory=list,
        description="Directories holding production checkpoints (each a checkpoint or a folder of them); the "
        "worker warm-starts from the one whose sha256 the parent version's lineage names.",
    )
    loop_new_route_method: Literal["proto", "gate"] = Field(
        default="proto",
        description="How a job grows a route its labels name and the model lacks: proto (the top adapter + "
        "head, then trained with the rest; round 3's method) or gate (the parent's routing untouched, an lr "
        "gate on the parent's and the base encoder's embeddings, the request's word pieces and the parent's "
        "confidence claims the route, as `autoglm add-route "
        "--method gate`; the job's fine-tune fits it again on the new adapters, and a gated model cannot "
        "grow a second route). docs/arch/loop.md, 'Gated routes in the loop'.",
    )
    loop_gate_hard_negatives: bool = Field(
        default=True,
        description="When a job refits a gated route's gate, also fit and calibrate it on the job's "
        "labelled examples of the other routes (the hard examples the fleet sent, with the gate's altered "
        "copies), not only on the generator's replay. docs/EVALUATION.md, 'Fourteenth selection round'.",
    )
    loop_graph_heads: bool = Field(
        default=True,
        description="When the production bundle carries the learned graph heads (hop_scorer), train new "
        "ones on the job's encoder (its adapters shift the embeddings) and ship them in the new version.",
    )
    loop_fleet_priors: bool = Field(
        default=True,
        description="A job that trains graph heads reads the fleet's path feedback sums from the sync hub's "
        "database at its start and trains the path scorer with them (confirmed paths weighted up, rejected "
        "ones a margin); the new version's lineage records their count and digest.",
    )
    loop_sign_key: Path | None = Field(
        default=None,
        description="Ed25519 key the worker signs new bundles with (needed when bundle_public_key is set).",
    )
    loop_canary_steps: list[float] = Field(
        default_factory=lambda: [25.0, 100.0],
        description="Rollout steps (percent of nodes) of a loop version.",
    )
    loop_canary_pause_s: float = Field(default=30.0, ge=0, description="Bake time of each canary step.")
    loop_canary_analysis: bool = Field(default=True, description="Judge each canary step on edge metrics.")
    loop_canary_min_requests: int = Field(
        default=50, ge=0, description="Canary requests needed before the analysis gives a verdict."
    )
    loop_canary_max_fallback_rate: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Canary analysis: largest share of answers the canary may fall back to the cloud for.",
    )
    loop_canary_max_p99_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Canary analysis: canary p99 latency may be at most this times the stable's.",
    )
    loop_canary_p99_slack_ms: float = Field(
        default=5.0, ge=0, description="Canary analysis: added to the p99 bound (noise at tiny latencies)."
    )
    loop_on_inconclusive: Literal["abort", "promote"] = Field(
        default="abort", description="What the worker does when the canary analysis stays inconclusive."
    )
    loop_rollout_timeout_s: float = Field(
        default=1800.0, gt=0, description="A canary not finished after this long is aborted by the worker."
    )
    loop_worker_poll_s: float = Field(default=1.0, gt=0, description="How often the worker looks for work.")
    loop_job_stale_s: float = Field(
        default=60.0,
        gt=0,
        description="A running job whose worker has not reported for this long is taken over: resumed when "
        "its version was registered, else failed (nothing half-registered).",
    )
    loop_max_log_lines: int = Field(
        default=400, ge=10, description="Log lines kept per job (oldest dropped)."
    )
    loop_work_dir: Path | None = Field(
        default=None,
        description="Scratch space of the worker (checkpoints, bundles); default: data_dir/loop.",
    )
