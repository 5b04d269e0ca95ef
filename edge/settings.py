"""Edge serving settings (env prefix ``AUTOGLM_EDGE_``, YAML section ``edge``).

One class per concern: this one configures the inference server (``autoglm edge serve``):
where the bundle comes from, the HTTP listener, the dynamic batcher, the result cache and the
ONNX Runtime execution providers. Other edge concerns (sync, agent) keep their own classes with
their own field-name prefixes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.defaults import EDGE_HTTP_PORT
from contracts.settings import AutoGLMSettings, data_dir

ProviderName = Literal["tensorrt", "cuda", "cpu"]
IoBindingSetting = Literal["auto", "on", "off"]
DEFAULT_PROVIDER_ORDER: tuple[ProviderName, ...] = ("tensorrt", "cuda", "cpu")


class ServeSettings(AutoGLMSettings):
    """Everything the edge inference server needs."""

    yaml_section: ClassVar[str] = "edge"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_EDGE_", extra="ignore", validate_default=True)

    node_id: str = Field(
        default="edge-local", description="This edge node's id (logs, metrics labels, sync)."
    )
    http_host: str = Field(default="0.0.0.0", description="Address the inference HTTP server listens on.")
    http_port: int = Field(
        default=EDGE_HTTP_PORT, ge=0, le=65535, description="Port of the inference HTTP server."
    )
    http_max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest accepted inference request body (413 above it: Content-Length checked before "
        "reading, then counted while reading; also the cap on a decompressed gzip/deflate body).",
    )
    http_admin_token: str = Field(
        default="",
        description="Bearer token required by the admin routes: model repository index/load/unload and "
        "POST /v1/knowledge. Empty: those routes answer 403 unless http_insecure_dev is set.",
    )
    http_insecure_dev: bool = Field(
        default=False,
        description="Development only: with no http_admin_token, serve the admin routes without a token "
        "(knowledge written that way stays on this node: never shared with the fleet).",
    )
    http_max_json_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest body of the JSON routes other than infer (/v1/ask, /v1/knowledge, repository "
        "load …): 413 above it (Content-Length checked first, then counted while reading).",
    )
    http_max_json_depth: int = Field(
        default=32,
        ge=2,
        le=512,
        description="Deepest nesting of arrays/objects accepted in a JSON body (400 deeper).",
    )
    http_max_inflight_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Budget of inference request bytes held at once (declared Content-Length, else "
        "http_max_body_bytes, reserved before reading until the answer is sent); beyond it 429 at once.",
    )
    http_limit_concurrency: int | None = Field(
        default=512,
        ge=1,
        description="uvicorn limit_concurrency: most connections/tasks at once; "
        "beyond it 503 at once (None: no limit).",
    )
    http_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes of `autoglm edge serve`, each with its own socket on the same port "
        "(SO_REUSEPORT, Linux) and its own model, batcher, result cache and ORT session (intra-op threads "
        "split between them when ort_intra_op_threads is 0). >1: the repository load/unload routes answer "
        "409 (a swap would reach one worker) and `autoglm edge run` / `agent` refuse to start.",
    )
    bundle_dir: Path | None = Field(
        default=None, description="Bundle directory served at start-up (None: wait for a load)."
    )
    bundle_public_key: str = Field(
        default="",
        description="Hex Ed25519 public key; when set, bundles must carry a valid signature to load.",
    )
    serve_adapter_set: str | None = Field(
        default=None, description="Adapter set of the bundle to serve (None: the bundle's default)."
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: data_dir() / "edge" / "model-cache",
        description="Where TensorRT engine caches and other per-device artefacts are kept.",
    )
    serve_max_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Most texts in one forward pass."
    )
    serve_max_queue_delay_ms: float = Field(
        default=10.0,
        ge=0.0,
        description="Longest a queued text waits for batch-mates while more keep arriving "
        "(with serve_arrival_gap_ms > 0). "
        "A batch starts at once when full, and as soon as the engine is idle otherwise.",
    )
    serve_arrival_gap_ms: float = Field(
        default=0.0,
        ge=0.0,
        description="0: an idle engine starts on what is queued (requests queue up while it runs). "
        ">0: wait while texts arrive closer together than this, up to serve_max_queue_delay_ms.",
    )
    serve_queue_capacity: int = Field(
        default=256, ge=1, description="Most texts waiting in the queue; beyond it requests get 429 at once."
    )
    serve_priority_levels: int = Field(
        default=2,
        ge=2,
        le=16,
        description="Priority levels (0 = normal … levels-1 = most critical, served first).",
    )
    serve_default_deadline_ms: float | None = Field(
        default=None, description="Deadline applied to requests that give none (None: no deadline)."
    )
    serve_bucket_overhead_tokens: int = Field(
        default=32,
        ge=0,
        description="Length bucketing: a batch is split into groups of similar token length when the padding "
        "saved exceeds this many tokens per extra forward call (0: one group per distinct length).",
    )
    serve_warmup_batches: int = Field(
        default=2, ge=0, description="Warm-up forward passes before a model serves."
    )
    serve_drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest an old model is kept for its in-flight requests after a swap.",
    )
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="Byte budget of the LZ4 result cache (0 disables it)."
    )
    providers: list[ProviderName] = Field(
        default_factory=lambda: list(DEFAULT_PROVIDER_ORDER),
        description="Execution providers in order of preference; "
        "unavailable ones are skipped (cpu always works).",
    )
    ort_intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads (0: cores available)."
    )
    ort_inter_op_threads: int = Field(default=1, ge=0, description="ONNX Runtime inter-op threads.")
    ort_allow_spinning: bool = Field(
        default=False,
        description="Let ORT worker threads spin after a run "
        "(faster on idle machines, steals CPU from the HTTP loop).",
    )
    ort_io_binding: IoBindingSetting = Field(
        default="auto",
        description="Run the ORT session through IOBinding (inputs bound from host memory, outputs kept on "
        "the device until one copy back): on, off, or auto = on when the session's first provider is "
        "CUDA / TensorRT.",
    )
    trt_fp16: bool = Field(default=True, description="TensorRT EP: allow fp16 kernels.")
    trt_int8: bool = Field(default=False, description="TensorRT EP: allow int8 kernels (needs a Q/DQ graph).")
    trt_workspace_mb: int = Field(default=2048, ge=64, description="TensorRT EP: builder workspace in MiB.")
    cuda_device_id: int = Field(default=0, ge=0, description="GPU used by the CUDA / TensorRT providers.")
