"""The bundle manifest: the versioned contract between export, cloud registry and edge.

A bundle is a directory (or a tar archive of one) with ``manifest.yaml`` at its root. The
manifest names every other file with its sha256 and size, so signing the manifest bytes
(``manifest.sig``, ed25519) covers the whole bundle. ``docs/arch/bundle.md`` documents every
field. Readers reject a ``schema_version`` they do not know instead of guessing.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.errors import BundleError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})
MANIFEST_FILE = "manifest.yaml"
SIGNATURE_FILE = "manifest.sig"

SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Precision = Literal["fp32", "fp16", "int8"]
BundleKind = Literal["full", "adapter_update"]


def _check_sha(value: str) -> str:
    if not SHA256_RE.match(value):
        raise ValueError(f"not a lower-case hex sha256: {value!r}")
    return value


def _check_rel_path(value: str) -> str:
    """Bundle file names are relative POSIX paths that stay inside the bundle."""
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or any(p in ("", ".", "..") for p in value.split("/"))
    ):
        raise ValueError(f"bundle file name {value!r} must be a relative path inside the bundle")
    return value


# Where each precision runs best: int8 (dynamic quantization) is a CPU format — its quantized MatMuls
# run on the CPU provider even inside a CUDA session; fp16 is a GPU format; fp32 runs everywhere.
PRECISION_RUNS_ON: dict[str, tuple[str, ...]] = {
    "fp32": ("cpu", "cuda", "tensorrt"),
    "int8": ("cpu",),
    "fp16": ("cuda", "tensorrt"),
}


def variant_version(of: str, precision: str) -> str:
    """The version string of ``of``'s ``precision`` variant: ``1.2.0`` -> ``1.2.0+int8``."""
    return f"{of}+{precision}"


Sha256 = Annotated[str, AfterValidator(_check_sha)]
RelPath = Annotated[str, AfterValidator(_check_rel_path)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TensorSpec(_Strict):
    """One graph input or output: name, element type and shape (int = fixed, str = dynamic axis)."""

    name: str
    dtype: Literal["int64", "float32", "float16"]
    shape: list[int | str]


class Signature(_Strict):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def default_signature(hidden: int | str = "hidden", n_routes: int | str = "n_routes") -> Signature:
    """The encoder graph's signature: ``(input_ids, attention_mask) -> (embedding, route_logits)``."""
    return Signature(
        inputs=[
            TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"]),
            TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "sequence"]),
        ],
        outputs=[
            TensorSpec(name="embedding", dtype="float32", shape=["batch", hidden]),
            TensorSpec(name="route_logits", dtype="float32", shape=["batch", n_routes]),
        ],
    )


class FileEntry(_Strict):
    sha256: Sha256
    size: int = Field(ge=0)


class BaseEncoder(_Strict):
    """The pretrained encoder the adapters were trained on (id and sha256 of its weight file)."""

    id: str
    sha256: Sha256
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)


class AdapterTensor(_Strict):
    """One bindable graph initializer: its shape in the graph's layout (always float32).

    ``transposed``: the graph holds the training parameter transposed (``Linear`` weights read
    by ``MatMul`` are ``[in, out]``); exporters of later adapter versions write the same layout.
    """

    shape: list[int]
    dtype: Literal["float32"] = "float32"
    transposed: bool = False


class AdapterSetEntry(_Strict):
    """A named adapter set: its weight file (safetensors, graph layout) and its route head."""

    file: RelPath
    sha256: Sha256
    routes: list[str] = Field(min_length=2)
    temperature: float = Field(default=1.0, gt=0)
    bottleneck: int = Field(gt=0)
    encoding: Literal["float32", "float16", "int8"] = (
        "float32"  # storage in the file (contracts.adapter_codec)
    )
    tensors: dict[str, AdapterTensor]


class GraphEntry(_Strict):
    """An ONNX graph. ``from_parent``: the file lives in the parent bundle (adapter updates)."""

    file: RelPath
    sha256: Sha256
    precision: Precision
    signature: Signature
    from_parent: bool = False
    # How the edge binds adapter tensors into this graph. "external": the adapter initializers are
    # external data (the default set's adapter file) and are replaced with
    # SessionOptions.add_external_initializers, which every provider honours. "initializer" (older
    # bundles): inline initializers replaced with add_initializer, which only the CPU provider honours.
    adapter_binding: Literal["initializer", "external"] = "initializer"


class TokenizerSpec(_Strict):
    file: RelPath = "tokenizer.json"
    max_length: int = Field(default=128, gt=1)
    lowercase: bool = True
    oov_char_fallback: bool = True  # contracts.tokenizer: single-char [UNK] -> [unusedN]
    padding: Literal["longest"] = "longest"
    from_parent: bool = False


class Metrics(_Strict):
    training: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)


class Provenance(_Strict):
    checkpoint_sha256: str
    git_commit: str | None = None
    exporter: str = "open-autoglm-edge"
    exporter_version: str = ""
    training: dict[str, Any] = Field(default_factory=dict)


class ParentRef(_Strict):
    """For adapter-only bundles: the full bundle whose graph(s) this one reuses."""

    name: str
    version: str
    manifest_sha256: Sha256


class VariantRef(_Strict):
    """A precision variant of a registered version (issue 17): the same checkpoint exported in another
    precision, registered as ``{of}+{precision}``. ``runs_on``: the execution providers it runs best on
    (short names ``cpu`` / ``cuda`` / ``tensorrt``); the rollout controller sends each node the
    variant whose ``runs_on`` its reported providers support (``cloud/rollout/variants.py``)."""

    of: str = Field(description="The version this bundle is a variant of (same checkpoint)")
    runs_on: list[Literal["cpu", "cuda", "tensorrt"]] = Field(min_length=1)


class TensorRTEngine(_Strict):
    """A serialized TensorRT engine: runs only on the GPU architecture and TRT version it was built with."""

    file: RelPath
    graph: str = "encoder"
    precision: Literal["fp16", "int8", "fp32"]
    gpu_name: str
    gpu_arch: str  # compute capability, e.g. "9.0"
    trt_version: str
    refittable: bool = True
    min_shape: list[int]
    opt_shape: list[int]
    max_shape: list[int]


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    kind: BundleKind = "full"
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    created_at: str
    base_encoder: BaseEncoder
    routes: list[str] = Field(min_length=2)
    default_adapter_set: str
    adapter_sets: dict[str, AdapterSetEntry] = Field(min_length=1)
    graphs: dict[str, GraphEntry]
    opset: int = Field(ge=11)
    precision: Precision
    files: dict[str, FileEntry]
    tokenizer: TokenizerSpec
    metrics: Metrics = Field(default_factory=Metrics)
    provenance: Provenance
    parent: ParentRef | None = None
    tensorrt: list[TensorRTEngine] = Field(default_factory=list)
    variant: VariantRef | None = None

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER_RE.match(v):
            raise ValueError(f"version {v!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        return v

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"unknown schema_version {v} (this build reads {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        return v

    @field_validator("files")
    @classmethod
    def _file_names(cls, v: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in v:
            _check_rel_path(name)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if "encoder" not in self.graphs:
            raise ValueError("graphs must contain the 'encoder' graph")
        if self.default_adapter_set not in self.adapter_sets:
            raise ValueError(
                f"default_adapter_set {self.default_adapter_set!r} is not one of {list(self.adapter_sets)}"
            )
        if self.adapter_sets[self.default_adapter_set].routes != self.routes:
            raise ValueError("routes must equal the default adapter set's routes")
        for set_name, entry in self.adapter_sets.items():
            self._require_file(entry.file, entry.sha256, f"adapter set {set_name!r}")
        for role, graph in self.graphs.items():
            if graph.from_parent:
                if self.parent is None:
                    raise ValueError(f"graph {role!r} is from_parent but the manifest has no parent")
            else:
                self._require_file(graph.file, graph.sha256, f"graph {role!r}")
        if self.tokenizer.from_parent and self.parent is None:
            raise ValueError("tokenizer is from_parent but the manifest has no parent")
        if not self.tokenizer.from_parent and self.tokenizer.file not in self.files:
            raise ValueError(f"tokenizer file {self.tokenizer.file!r} is not listed in files")
        if self.kind == "adapter_update" and self.parent is None:
            raise ValueError("an adapter_update bundle needs a parent")
        for engine in self.tensorrt:
            if engine.file not in self.files:
                raise ValueError(f"TensorRT engine {engine.file!r} is not listed in files")
        if self.variant is not None:
            if self.kind != "full":
                raise ValueError("only a full bundle can be a precision variant")
            if not SEMVER_RE.match(self.variant.of) or "+" in self.variant.of:
                raise ValueError(f"variant.of {self.variant.of!r} must be a version without build metadata")
            if self.version != variant_version(self.variant.of, self.precision):
                raise ValueError(
                    f"a {self.precision} variant of {self.variant.of} must have version "
                    f"{variant_version(self.variant.of, self.precision)!r}, not {self.version!r}"
                )
        return self

    def _require_file(self, name: str, sha: str, what: str) -> None:
        entry = self.files.get(name)
        if entry is None:
            raise ValueError(f"{what}: file {name!r} is not listed in files")
        if entry.sha256 != sha:
            raise ValueError(f"{what}: sha256 differs from files[{name!r}]")

    # -- YAML ---------------------------------------------------------------------------------

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=False)
        if data.get("variant") is None:
            data.pop("variant", None)  # bundles that are no variant read as before on older edges
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)

    @classmethod
    def from_yaml(cls, text: str | bytes, where: str = MANIFEST_FILE) -> Manifest:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleError(f"{where}: not valid YAML ({exc})") from exc
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST_FILE) -> Manifest:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: top level must be a mapping")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"{where}: schema_version missing or not an integer ({version!r})")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise BundleError(
                f"{where}: unknown schema_version {version} "
                f"(this build reads {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise BundleError(f"{where}: invalid manifest ({problems})") from exc
