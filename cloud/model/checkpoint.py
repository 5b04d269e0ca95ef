"""Trained checkpoints: a reference to the base encoder + adapter sets and heads in safetensors.

Layout of a checkpoint directory::

    checkpoint.yaml        format, base {path, sha256, id, config}, adapter sets {routes,
                           bottleneck, temperature}, tokenizer settings, training config, metrics
    adapters.safetensors   "{set}.adapters.{i}.down.weight", "{set}.heads.router.out.bias", …

The base weights are *not* copied: the checkpoint names them by path and sha256, and loading
fails with a clear message when the file at that path has another hash.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import base_sha256
from cloud.model.encoder import BertConfig
from contracts.tokenizer import TextTokenizer, TokenizerSettings

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "checkpoint.yaml"
WEIGHTS_FILE = "adapters.safetensors"


class CheckpointError(ValueError):
    """The directory is not a (compatible) checkpoint; the message names the problem."""


@dataclass
class AdapterSetInfo:
    routes: list[str]
    bottleneck: int = 64
    temperature: float = 1.0  # calibrated softmax temperature for route confidence


@dataclass
class CheckpointMeta:
    base_path: str
    base_sha256: str
    base_id: str
    base_config: dict[str, Any]
    adapter_sets: dict[str, AdapterSetInfo]
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"max_length": 128, "lowercase": True})
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    format: int = CHECKPOINT_FORMAT

    def tokenizer_settings(self) -> TokenizerSettings:
        """The tokenizer settings the checkpoint was trained with (``tokenizer`` in checkpoint.yaml;
        a key it does not record takes :class:`TokenizerSettings`' default, unknown keys are ignored)."""
        tok = self.tokenizer
        default = TokenizerSettings()
        return TokenizerSettings(
            max_length=int(tok.get("max_length", default.max_length)),
            lowercase=bool(tok.get("lowercase", default.lowercase)),
            oov_char_fallback=bool(tok.get("oov_char_fallback", default.oov_char_fallback)),
        )

    def route_gate_doc(self) -> dict[str, Any] | None:
        """The stored gate of a route grown as a gate (``training.new_route.gate``), else None."""
        grown = self.training.get("new_route")
        if not isinstance(grown, dict) or not grown.get("gate"):
            return None
        return dict(grown["gate"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "created_at": self.created_at,
            "base": {
                "path": self.base_path,
                "sha256": self.base_sha256,
                "id": self.base_id,
                "config": self.base_config,
            },
            "adapter_sets": {
                k: {"routes": v.routes, "bottleneck": v.bottleneck, "temperature": v.temperature}
                for k, v in self.adapter_sets.items()
            },
            "tokenizer": self.tokenizer,
            "training": self.training,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "checkpoint") -> CheckpointMeta:
        try:
            if d.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointError(f"{where}: unsupported checkpoint format {d.get('format')!r}")
            base = d["base"]
            sets = {
                k: AdapterSetInfo(
                    list(v["routes"]), int(v.get("bottleneck", 64)), float(v.get("temperature", 1.0))
                )
                for k, v in d["adapter_sets"].items()
            }
            return cls(
                base_path=str(base["path"]),
                base_sha256=str(base["sha256"]),
                base_id=str(base.get("id", "")),
                base_config=dict(base["config"]),
                adapter_sets=sets,
                tokenizer=dict(d.get("tokenizer") or {}),
                training=dict(d.get("training") or {}),
                metrics=dict(d.get("metrics") or {}),
                created_at=str(d.get("created_at", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{where}: malformed checkpoint.yaml ({exc!r})") from exc


def checkpoint_tokenizer(meta: CheckpointMeta) -> TextTokenizer:
    """The tokenizer exactly as the checkpoint was trained with: its base encoder's vocabulary and the
    settings it recorded. Everything that encodes text for a checkpoint (training, the loop's
    fine-tune and triage, co-training, export) builds its tokenizer here, so a checkpoint trained
    with other settings (no lower-casing, no OOV character fallback) is never read with the defaults."""
    return TextTokenizer(Path(meta.base_path), meta.tokenizer_settings())


def save_checkpoint(
    model: AutoGLMModel,
    out_dir: Path,
    *,
    base_path: Path,
    base_hash: str | None = None,
    base_id: str = "",
    tokenizer: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    temperatures: dict[str, float] | None = None,
) -> Path:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    infos = {}
    for name in model.adapter_sets:
        aset = model.adapter_set(name)
        for k, v in aset.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        infos[name] = AdapterSetInfo(aset.routes, aset.bottleneck, (temperatures or {}).get(name, 1.0))
    meta = CheckpointMeta(
        base_path=str(Path(base_path).resolve()),
        base_sha256=base_hash or base_sha256(Path(base_path)),
        base_id=base_id or Path(base_path).name,
        base_config=model.config.__dict__.copy(),
        adapter_sets=infos,
        tokenizer=tokenizer or {"max_length": 128, "lowercase": True},
        training=training or {},
        metrics=metrics or {},
    )
    tmp = out_dir / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out_dir / WEIGHTS_FILE)
    (out_dir / CHECKPOINT_FILE).write_text(
        yaml.safe_dump(meta.to_dict(), sort_keys=False, allow_unicode=True)
    )
    return out_dir


def read_checkpoint_meta(ckpt_dir: Path) -> CheckpointMeta:
    ckpt_dir = Path(ckpt_dir)
    f = ckpt_dir / CHECKPOINT_FILE
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: no such checkpoint directory")
    if not f.is_file():
        raise CheckpointError(f"{ckpt_dir}: not a checkpoint (no {CHECKPOINT_FILE})")
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{f}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{f}: top level must be a mapping")
    return CheckpointMeta.from_dict(data, str(f))


def load_checkpoint(
    ckpt_dir: Path, base_path: Path | None = None, verify_base: bool = True
) -> tuple[AutoGLMModel, CheckpointMeta]:
    """Rebuild the model. ``base_path`` overrides the recorded path (the hash must still match)."""
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    meta = read_checkpoint_meta(ckpt_dir)
    base = Path(base_path or meta.base_path)
    if not base.is_dir():
        raise CheckpointError(f"{ckpt_dir}: base encoder directory {base} does not exist")
    if verify_base:
        actual = base_sha256(base)
        if actual != meta.base_sha256:
            raise CheckpointError(
                f"{ckpt_dir}: base encoder at {base} has sha256 {actual[:12]}…, "
                f"checkpoint expects {meta.base_sha256[:12]}…"
            )
    model = AutoGLMModel.from_pretrained(base)
    if BertConfig.from_dir(base).__dict__ != {**model.config.__dict__}:
        raise CheckpointError(f"{ckpt_dir}: base config mismatch")
    wfile = ckpt_dir / WEIGHTS_FILE
    if not wfile.is_file():
        raise CheckpointError(f"{ckpt_dir}: missing {WEIGHTS_FILE}")
    tensors = load_file(str(wfile))
    for name, info in meta.adapter_sets.items():
        aset = model.add_adapter_set(name, info.routes, info.bottleneck)
        prefix = f"{name}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            aset.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt_dir}: adapter set {name!r} weights do not fit: {exc}") from exc
    _attach_route_gate(ckpt_dir, model, meta)
    model.freeze_base()
    model.eval()
    return model, meta


def _attach_route_gate(ckpt_dir: Path, model: AutoGLMModel, meta: CheckpointMeta) -> None:
    """A route grown as a gate (``training.new_route.gate``, cloud.training.route_gate) is applied
    by the model's forward on the adapter set whose last route it is."""
    from cloud.model.route_gate import RouteGate, feature_parts

    doc = meta.route_gate_doc()
    if doc is None:
        return
    try:
        gate = RouteGate.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt_dir}: training.new_route.gate is not a valid gate: {exc}") from exc
    owners = [n for n, info in meta.adapter_sets.items() if info.routes and info.routes[-1] == gate.route]
    if len(owners) != 1:
        raise CheckpointError(
            f"{ckpt_dir}: gated route {gate.route!r} must be the last route of exactly one adapter set"
        )
    width = model.config.hidden_size * feature_parts(gate.feature)
    if tuple(gate.centre.shape) != (width,) or gate.vectors.ndim != 2 or gate.vectors.shape[1] != width:
        raise CheckpointError(f"{ckpt_dir}: gate for {gate.route!r} does not fit the encoder (width {width})")
    model.route_gates[owners[0]] = gate
