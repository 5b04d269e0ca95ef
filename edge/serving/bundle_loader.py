"""Bundle directory → :class:`LoadedModel`: verify, pick the engine, build the tokenizer.

Verification (schema, hashes, optional ed25519 signature) is ``contracts.bundle.open_bundle``;
any failure is a :class:`BundleError` naming the problem, and the caller keeps serving what it
had. The engine is the native TensorRT runtime when the bundle (or, for an adapter-only update, its
parent) carries an engine built for this GPU and TensorRT version — taken from the node's engine
cache or refitted with the adapter set (``edge.runtime.trt_cache``) — otherwise an ONNX Runtime
:class:`BundleSession` on the providers chosen by :func:`select_providers` (TensorRT EP → CUDA EP → CPU).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from contracts.bundle import Bundle, open_bundle
from contracts.errors import BundleError
from contracts.logging import get_logger
from contracts.manifest import MANIFEST_FILE, Manifest, TensorRTEngine
from edge.runtime.bundle_session import BundleSession, bundle_tokenizer, load_adapter_tensors
from edge.runtime.engine import Engine
from edge.runtime.providers import ORT_PROVIDER_NAMES, make_session_options, select_providers
from edge.runtime.tensorrt_engine import GpuInfo, TensorRTEngineRuntime, detect_gpu, matching_engine
from edge.runtime.trt_cache import EngineCache, EngineKey, adapter_set_hash, native_engine
from edge.serving.loaded_model import LoadedModel
from edge.settings import ServeSettings

log = get_logger("autoglm.edge.runtime.loader")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def read_manifest_kind(source: Path) -> str:
    """``full`` or ``adapter_update`` (unverified peek; ``open_bundle`` verifies afterwards)."""
    path = Path(source) / MANIFEST_FILE
    if not path.is_file():
        return "full"  # open_bundle reports the missing manifest
    return Manifest.from_yaml(path.read_bytes(), str(path)).kind


def public_key_arg(value: str) -> bytes | Path | None:
    """``bundle_public_key`` as hex text or a path to a key file."""
    value = value.strip()
    if not value:
        return None
    return value.encode() if _HEX64.match(value) else Path(value)


class BundleModelLoader:
    """Callable ``(bundle_dir, adapter_set) -> LoadedModel`` (runs in a worker thread).

    ``parent_of``: where an adapter-only update bundle finds its parent (the graph and the
    tokenizer it reuses) — by default the bundle currently served. ``open_bundle`` checks that
    it is exactly the parent the update names (manifest sha256).
    """

    def __init__(self, settings: ServeSettings, parent_of: Callable[[], Path | None] | None = None) -> None:
        self.settings = settings
        self.parent_of = parent_of

    def open(self, source: Path) -> Bundle:
        key = public_key_arg(self.settings.bundle_public_key)
        if read_manifest_kind(source) == "adapter_update":
            parent = self.parent_of() if self.parent_of else None
            if parent is None:
                raise BundleError(f"{source} is an adapter-only update; load its parent bundle first")
            return open_bundle(
                source, public_key=key, verify=True, parent=open_bundle(parent, key, verify=False)
            )
        return open_bundle(source, public_key=key, verify=True)

    def __call__(self, source: Path, adapter_set: str | None = None) -> LoadedModel:
        s = self.settings
        bundle = self.open(Path(source))
        m = bundle.manifest
        set_name = adapter_set or s.serve_adapter_set or m.default_adapter_set
        if set_name not in m.adapter_sets:
            raise BundleError(
                f"bundle {m.name}@{m.version}: no adapter set {set_name!r} (has {sorted(m.adapter_sets)})"
            )
        entry = m.adapter_sets[set_name]
        tokenizer = bundle_tokenizer(bundle)
        engine, providers, close, provider_info = self._engine(bundle, set_name)
        log.info("loaded %s@%s adapter set %s on %s", m.name, m.version, set_name, providers)
        if provider_info.get("provider_fallback"):
            log.warning(
                "%s@%s: execution provider(s) %s did not start; running on %s",
                m.name,
                m.version,
                provider_info["provider_fallback"],
                providers,
            )
        return LoadedModel(
            name=m.name,
            version=m.version,
            adapter_set=set_name,
            routes=list(entry.routes),
            temperature=float(entry.temperature),
            engine=engine,
            tokenizer=tokenizer,
            lowercase=m.tokenizer.lowercase,
            bucket_overhead_tokens=s.serve_bucket_overhead_tokens,
            embedding_dim=m.base_encoder.hidden_size,
            source=Path(source),
            parent=bundle.parent.root if bundle.parent is not None else None,
            providers=providers,
            extra={
                "precision": m.precision,
                "base_encoder": m.base_encoder.id,
                "created_at": m.created_at,
                **provider_info,
            },
            close_fn=close,
        )

    def _native(
        self, bundle: Bundle, ships: Bundle, set_name: str, spec: TensorRTEngine, gpu: GpuInfo
    ) -> tuple[Engine, list[str], Callable[[], None] | None, dict[str, str]]:
        """The native engine for ``set_name`` from the node's engine cache (``edge.runtime.trt_cache``:
        cached → refit of the engine served before → the bundle's own engine)."""
        s = self.settings
        m = bundle.manifest
        entry = m.adapter_sets[set_name]
        tensors = load_adapter_tensors(bundle.adapter_file(set_name), entry, set_name)
        sm = ships.manifest
        default = sm.adapter_sets[sm.default_adapter_set]
        shipped_hash = adapter_set_hash(
            load_adapter_tensors(ships.adapter_file(sm.default_adapter_set), default, sm.default_adapter_set)
        )
        key = EngineKey(
            graph_sha256=bundle.graph("encoder").sha256,
            adapter_sha256=adapter_set_hash(tensors),
            precision=spec.precision,
            gpu_name=gpu.name,
            gpu_arch=gpu.arch,
            trt_version=gpu.trt_version,
        )
        if key.adapter_sha256 != shipped_hash and not spec.refittable:
            raise BundleError(f"TensorRT engine {spec.file} is not refittable: cannot serve {set_name!r}")
        got = native_engine(
            EngineCache(s.model_cache_dir),
            key,
            tensors,
            lambda path: TensorRTEngineRuntime(path, spec, s.cuda_device_id),
            (ships.root / spec.file, shipped_hash),
            label=f"{m.name}@{m.version}/{set_name}",
        )
        native = f"TensorRT-native({spec.gpu_arch}, {spec.precision})"
        info = {"providers_requested": native, "provider_fallback": "", "providers_skipped": "", **got.info()}
        return got.runtime, [native], got.runtime.close, info

    def _engine(
        self, bundle: Bundle, set_name: str
    ) -> tuple[Engine, list[str], Callable[[], None] | None, dict[str, str]]:
        """The engine, the providers that really run it, its close hook, and provider notes for
        ``LoadedModel.extra`` (``providers_requested``; ``provider_fallback``: requested providers
        that did not start, e.g. the TensorRT EP without libnvinfer — empty when none;
        ``providers_skipped``: configured ones this onnxruntime build does not offer)."""
        s = self.settings
        m = bundle.manifest
        wants_trt = "tensorrt" in s.providers and bool(
            m.tensorrt or (bundle.parent and bundle.parent.manifest.tensorrt)
        )
        if wants_trt:
            gpu, why = detect_gpu(s.cuda_device_id)
            # an adapter-only update carries no engine: its parent's engine is refitted with the new set
            ships = bundle if m.tensorrt else bundle.parent
            assert ships is not None
            spec = matching_engine(ships.manifest.tensorrt, gpu)
            if spec is not None and gpu is not None:  # pragma: no cover - needs a GPU
                try:
                    return self._native(bundle, ships, set_name, spec, gpu)
                except BundleError as exc:
                    log.warning(
                        "native TensorRT engine not used, serving on the ONNX Runtime providers: %s", exc
                    )
            else:
                log.debug(
                    "bundle carries TensorRT engines but none runs here: %s", why or "no engine for this GPU"
                )
        choice = select_providers(s)
        session = BundleSession(
            bundle,
            adapter_set=set_name,
            providers=list(zip(choice.providers, choice.provider_options, strict=True)),
            session_options=make_session_options(s),
            io_binding=s.ort_io_binding,
        )
        info = {
            "providers_requested": ",".join(choice.providers),
            # in this onnxruntime build but did not start (e.g. the TensorRT EP without libnvinfer)
            "provider_fallback": ",".join(session.fallback),
            # configured but not in this build at all (a CPU-only onnxruntime): skipped by design
            "providers_skipped": ",".join(ORT_PROVIDER_NAMES[name] for name in choice.skipped),
            "io_binding": "on" if session.io_binding else "off",
        }
        return session.run, session.providers, None, info
