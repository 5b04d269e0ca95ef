"""Which precision variant of a version each node gets (issue 17, hardware-aware variants).

A registered version may carry precision variants: the same checkpoint exported as int8 (for the
CPU), fp16 (for CUDA / TensorRT), … each registered as ``{version}+{precision}`` with
``manifest.variant.of == version`` (``contracts.manifest.VariantRef``). A rollout of the version
sends each node the variant its hardware runs best:

1. a node label ``autoglm/variant=<precision>`` pins one (no such variant: the node fails to
   apply, with the reason — a pin is the operator's word, never silently overridden);
2. else the node's heartbeat: ``providers`` (what its served model *really* runs on) or, before
   it serves anything, ``providers_available``; the first provider in
   :data:`PROVIDER_PREFERENCE` order that some variant ``runs_on`` picks, and among those variants
   the precision first in that provider's list (TensorRT / CUDA: fp16, then fp32; CPU: int8,
   then fp32);
3. a node that reported nothing gets the version itself.

A GPU whose CUDA provider failed to start reports ``CPUExecutionProvider`` only, so it gets the
CPU variant: the choice follows what really runs, not what is installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cloud.registry.schemas import VariantOut

VARIANT_LABEL = "autoglm/variant"

# ORT provider name -> short name used in VariantRef.runs_on
SHORT_PROVIDER = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}
PROVIDER_PREFERENCE = ("tensorrt", "cuda", "cpu")
PRECISION_PREFERENCE = {
    "tensorrt": ("fp16", "fp32", "int8"),
    "cuda": ("fp16", "fp32", "int8"),
    "cpu": ("int8", "fp32", "fp16"),
}


class Choice(NamedTuple):
    variant: VariantOut | None  # None: the node cannot get any variant (``reason`` says why)
    reason: str


def node_providers(metrics: Mapping[str, Any]) -> list[str]:
    """Short provider names a node reported: the served model's real ones, else the available ones."""
    for key in ("providers", "providers_available"):
        raw = metrics.get(key)
        if isinstance(raw, list) and raw:
            names = [SHORT_PROVIDER.get(str(p), "") for p in raw]
            return [n for n in names if n]
    return []


def choose_variant(
    family: Sequence[VariantOut], base: VariantOut, metrics: Mapping[str, Any], labels: Mapping[str, str]
) -> Choice:
    """The variant of ``family`` (``base`` is the version itself, a member too) for one node."""
    by_precision = {v.precision: v for v in family}
    pin = labels.get(VARIANT_LABEL)
    if pin:
        if pin in by_precision:
            return Choice(by_precision[pin], f"pinned by label {VARIANT_LABEL}={pin}")
        return Choice(
            None,
            f"label {VARIANT_LABEL}={pin} pins a variant {base.version} does not have "
            f"(has {', '.join(sorted(by_precision))})",
        )
    if len(family) == 1:
        return Choice(base, "the version has no other variants")
    have = node_providers(metrics)
    if not have:
        return Choice(base, "node reported no providers")
    for provider in PROVIDER_PREFERENCE:
        if provider not in have:
            continue
        fits = [v for v in family if provider in v.runs_on]
        for precision in PRECISION_PREFERENCE[provider]:
            for v in fits:
                if v.precision == precision:
                    return Choice(v, f"runs on {provider}")
    return Choice(base, f"no variant runs on {', '.join(have)}")
