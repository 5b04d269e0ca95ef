"""An ONNX Runtime session for one bundle + one adapter set (no torch, no onnx).

The bundle's encoder graph carries its default adapter set. Binding another set (or a newer
version of the same set) replaces the adapter initializers *at session creation* with the
tensors of the set's small safetensors file, before ONNX Runtime optimises the graph — so a new
adapter version ships without re-shipping the encoder, and the bound session computes exactly
what a full export of that adapter set computes (``tests/export/test_adapter_binding.py``).

Two binding modes, chosen by the manifest's ``graphs.encoder.adapter_binding``:

- ``external`` (current exporter): the graph's adapter initializers are external data (byte
  ranges of the default set's adapter file); ``SessionOptions.add_external_initializers``
  replaces them on **every** execution provider (CPU, CUDA, TensorRT).
- ``initializer`` (bundles from before issue 17): inline initializers replaced with
  ``SessionOptions.add_initializer``. Only the CPU provider honours that — CUDA logs a warning and
  silently runs the embedded default set — so such a bundle is refused on a GPU provider unless
  the asked set *is* the graph's embedded one (the default set of a full bundle).

``providers`` reports what the session really runs on (``InferenceSession.get_providers()``);
``fallback`` names every requested provider that is not among them (``strict_providers=True``
turns that into a :class:`BundleError`).

``io_binding`` (``auto`` | ``on`` | ``off``, setting ``ort_io_binding``): ``run`` binds the inputs
and outputs with ``InferenceSession.io_binding()``; the outputs are allocated on the device of the
session's first provider (CUDA memory for the CUDA / TensorRT EPs) and stay there until the one
copy back to the host after the run, instead of ORT's per-output copies through ``run``. ``auto``
turns it on only when the session's first provider is a GPU one; on the CPU provider IOBinding
computes bit-identical outputs (``tests/edge/test_io_binding.py``) and gains nothing (served
throughput 0.88-1.01x of the plain run, bench_serving record 2026-12-05 14:31, 2-core box).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

from contracts.adapter_codec import decode_tensors, expected_stored_names
from contracts.bundle import Bundle
from contracts.errors import BundleError
from contracts.manifest import AdapterSetEntry
from contracts.tokenizer import TextTokenizer, tokenizer_for

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# Providers that honour SessionOptions.add_initializer (the "initializer" binding of older bundles).
CPU_BINDING_PROVIDERS = frozenset({"CPUExecutionProvider", "AzureExecutionProvider"})
IoBindingMode = Literal["auto", "on", "off"]
# ORT's device name of the memory a provider's outputs live in, for IOBinding.bind_output
OUTPUT_DEVICE = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


def output_device(providers: Sequence[str]) -> str:
    """``cuda`` when the session's first provider is a GPU one, else ``cpu``."""
    return OUTPUT_DEVICE.get(providers[0], "cpu") if providers else "cpu"


def use_io_binding(mode: IoBindingMode, providers: Sequence[str]) -> bool:
    """``on``/``off`` as given; ``auto``: only where outputs live on a GPU (nothing to gain on CPU)."""
    if mode == "auto":
        return output_device(providers) != "cpu"
    return mode == "on"


def load_adapter_tensors(path: Path, entry: AdapterSetEntry, set_name: str) -> dict[str, np.ndarray]:
    """Read an adapter file and check it against the manifest's tensor list (names, shapes, dtype)."""
    if not path.is_file():
        raise BundleError(f"adapter set {set_name!r}: file {path} not found")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise BundleError(
            f"adapter set {set_name!r}: {path.name} is not a readable safetensors file ({exc})"
        ) from exc
    names = sorted(entry.tensors)
    want = expected_stored_names(names, {k: v.shape for k, v in entry.tensors.items()}, entry.encoding)
    have = set(tensors)
    if want != have:
        missing, extra = sorted(want - have), sorted(have - want)
        raise BundleError(
            f"adapter set {set_name!r}: tensors differ from the manifest "
            f"(missing {missing[:3]}, extra {extra[:3]})"
        )
    try:
        decoded = decode_tensors(tensors, entry.encoding, names)
    except (KeyError, ValueError) as exc:
        raise BundleError(
            f"adapter set {set_name!r}: cannot decode {entry.encoding} tensors ({exc})"
        ) from exc
    for name, spec in entry.tensors.items():
        arr = decoded[name]
        if list(arr.shape) != spec.shape:
            raise BundleError(
                f"adapter set {set_name!r}: tensor {name!r} has shape {list(arr.shape)}, "
                f"manifest says {spec.shape}"
            )
    return decoded


class BundleSession:
    """``run(input_ids, attention_mask) -> (embedding, route_logits)`` for one adapter set.

    ``providers``: ORT provider names (default CPU), or ``(name, options)`` pairs as ORT takes
    them. ``session_options``: an ``ort.SessionOptions`` to start from (it gains the adapter
    initializers, so do not share one between sessions of different adapter sets).
    """

    def __init__(
        self,
        bundle: Bundle,
        adapter_set: str | None = None,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        session_options: ort.SessionOptions | None = None,
        graph: str = "encoder",
        strict_providers: bool = False,
        io_binding: IoBindingMode = "auto",
    ) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.adapter_set = adapter_set or manifest.default_adapter_set
        entry = manifest.adapter_sets.get(self.adapter_set)
        if entry is None:
            raise BundleError(
                f"bundle {manifest.name}@{manifest.version}: no adapter set {self.adapter_set!r} "
                f"(has {sorted(manifest.adapter_sets)})"
            )
        self.entry = entry
        self.graph_entry = bundle.graph(graph)
        graph_path = bundle.graph_file(graph)
        so = session_options or ort.SessionOptions()
        wanted = list(providers or DEFAULT_PROVIDERS)
        self.requested_providers = [p if isinstance(p, str) else p[0] for p in wanted]
        # Keep the OrtValues alive for the session's lifetime: ORT does not copy them.
        self._bound: list[ort.OrtValue] = []
        self.binding = self.graph_entry.adapter_binding if graph == "encoder" else "none"
        if graph == "encoder":  # other roles (e.g. hop_scorer) carry no adapter initializers
            self._bind(
                so, load_adapter_tensors(bundle.adapter_file(self.adapter_set), entry, self.adapter_set)
            )
        try:
            self.session = ort.InferenceSession(str(graph_path), sess_options=so, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(
                f"bundle {manifest.name}@{manifest.version}: "
                f"ONNX Runtime cannot load {graph_path.name}: {exc}"
            ) from exc
        self.fallback = [p for p in self.requested_providers if p not in self.session.get_providers()]
        if self.fallback and strict_providers:
            raise BundleError(
                f"bundle {manifest.name}@{manifest.version}: "
                f"requested execution provider(s) {self.fallback} did not "
                f"start; the session runs on {self.session.get_providers()}"
            )
        sig = self.graph_entry.signature
        self.input_names = sig.input_names()
        self.output_names = sig.output_names()
        have_in = [i.name for i in self.session.get_inputs()]
        if have_in != self.input_names:
            raise BundleError(
                f"{graph_path.name}: graph inputs {have_in} differ from the manifest's {self.input_names}"
            )
        self.io_binding = use_io_binding(io_binding, self.providers)
        self.output_device = output_device(self.providers)
        self._device_id = _device_id(wanted)

    def _bind(self, so: ort.SessionOptions, tensors: dict[str, np.ndarray]) -> None:
        m = self.bundle.manifest
        values = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            for a in tensors.values()
        ]
        self._bound = values
        if self.binding == "external":
            so.add_external_initializers(list(tensors), values)
            return
        on_gpu = [p for p in self.requested_providers if p not in CPU_BINDING_PROVIDERS]
        embedded = m.kind == "full" and self.adapter_set == m.default_adapter_set
        if on_gpu and not embedded:
            raise BundleError(
                f"bundle {m.name}@{m.version}: adapter set {self.adapter_set!r} cannot be bound on {on_gpu}: "
                "the graph stores its adapters inline "
                "(bundle from an exporter before adapter_binding: external), "
                "which only the CPU provider can replace; "
                "re-export the bundle, or serve it on the CPU provider"
            )
        if embedded and on_gpu:
            return  # the graph already carries exactly this set
        for name, value in zip(tensors, values, strict=True):
            so.add_initializer(name, value)

    @property
    def routes(self) -> list[str]:
        return list(self.entry.routes)

    @property
    def temperature(self) -> float:
        return self.entry.temperature

    @property
    def version(self) -> str:
        return self.bundle.manifest.version

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.io_binding:
            return self.run_bound(input_ids, attention_mask)
        feeds = {
            self.input_names[0]: np.asarray(input_ids, dtype=np.int64),
            self.input_names[1]: np.asarray(attention_mask, dtype=np.int64),
        }
        embedding, logits = self.session.run(self.output_names[:2], feeds)
        return np.asarray(embedding, dtype=np.float32), np.asarray(logits, dtype=np.float32)

    def run_bound(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``run`` through IOBinding: host inputs bound as they are (ORT copies them to the device
        once), outputs allocated by ORT on the session's device and copied to the host once, after
        the run. A new binding per call: ``run`` may be called from several threads."""
        binding = self.session.io_binding()
        for name, arr in zip(self.input_names[:2], (input_ids, attention_mask), strict=True):
            binding.bind_cpu_input(name, np.ascontiguousarray(arr, dtype=np.int64))
        for name in self.output_names[:2]:
            binding.bind_output(name, self.output_device, self._device_id)
        self.session.run_with_iobinding(binding)
        embedding, logits = binding.copy_outputs_to_cpu()
        return np.asarray(embedding, dtype=np.float32), np.asarray(logits, dtype=np.float32)


def _device_id(providers: Sequence[str | tuple[str, dict[str, Any]]]) -> int:
    """The ``device_id`` option of the first provider that names one (0 otherwise)."""
    for p in providers:
        if not isinstance(p, str) and "device_id" in p[1]:
            return int(p[1]["device_id"])
    return 0


SMOKE_TEXTS = ("what is 2 plus 2", "你好", "")


def bundle_tokenizer(bundle: Bundle) -> TextTokenizer:
    """The tokenizer exactly as the bundle's manifest configures it (same ids as at training)."""
    return tokenizer_for(bundle.tokenizer_file(), bundle.manifest.tokenizer)


def smoke_test(
    bundle: Bundle, adapter_set: str | None = None, providers: Sequence[str] | None = None
) -> dict[str, Any]:
    """Load the bundle's graph with ``adapter_set`` bound and run a tiny batch; raise BundleError on
    any sign of a broken bundle (wrong shapes, non-finite values, embeddings not unit length)."""
    tokenizer = bundle_tokenizer(bundle)
    session = BundleSession(bundle, adapter_set=adapter_set, providers=providers)
    ids, mask = tokenizer(list(SMOKE_TEXTS))
    emb, logits = session.run(ids, mask)
    n = len(SMOKE_TEXTS)
    where = f"bundle {bundle.manifest.name}@{bundle.manifest.version} adapter set {session.adapter_set!r}"
    hidden = bundle.manifest.base_encoder.hidden_size
    if emb.shape != (n, hidden) or logits.shape != (n, len(session.routes)):
        raise BundleError(
            f"{where}: outputs {emb.shape}/{logits.shape}, "
            f"expected ({n}, {hidden})/({n}, {len(session.routes)})"
        )
    if not (np.isfinite(emb).all() and np.isfinite(logits).all()):
        raise BundleError(f"{where}: non-finite outputs")
    norms = np.linalg.norm(emb, axis=1)
    if np.abs(norms - 1.0).max() > 1e-2:
        raise BundleError(f"{where}: embeddings are not L2-normalised (norms {norms.round(3).tolist()})")
    return {
        "adapter_set": session.adapter_set,
        "providers": session.providers,
        "fallback": session.fallback,
        "binding": session.binding,
        "routes": [session.routes[i] for i in logits.argmax(axis=1)],
    }
