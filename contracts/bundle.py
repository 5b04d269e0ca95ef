"""Opening and verifying a bundle directory — no torch, no onnx, no onnxruntime.

Checks, in order (the first failure raises :class:`BundleError` naming the problem):

1. ``manifest.yaml`` exists, parses, has a ``schema_version`` this build knows, validates.
2. ``manifest.sig`` (ed25519 over the exact bytes of ``manifest.yaml``) verifies against the
   given public key. With a key, a missing signature is an error; without one, a present
   signature is left unchecked (``Bundle.signature_verified`` says which).
3. Every file in ``manifest.files`` exists, has the recorded size (truncation is reported as
   such) and sha256.
4. For adapter-only bundles: the parent (when given) is the bundle the manifest names, and
   carries each ``from_parent`` graph with the recorded sha256.

Also: signing keys (``generate_keypair`` / ``sign_bundle``) and single-archive pack / unpack
(plain or gzip tar; unpacking refuses links, devices and paths leaving the target).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from contracts.errors import BundleError
from contracts.manifest import MANIFEST_FILE, SIGNATURE_FILE, GraphEntry, Manifest

__all__ = [
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "Bundle",
    "BundleError",
    "generate_keypair",
    "load_signing_key",
    "load_verify_key",
    "open_bundle",
    "pack_bundle",
    "sha256_bytes",
    "sha256_file",
    "sign_bundle",
    "unpack_bundle",
]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- keys ---------------------------------------------------------------------------------------


def _key_bytes(raw: bytes, what: str) -> bytes:
    """Keys are stored as 64 hex characters (optionally with whitespace) or as 32 raw bytes."""
    text = raw.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(raw) == 32:
        return raw
    raise BundleError(f"{what}: not an ed25519 key (expected 64 hex characters or 32 raw bytes)")


def load_verify_key(public_key: bytes | str | Path) -> VerifyKey:
    if isinstance(public_key, bytes):
        return VerifyKey(_key_bytes(public_key, "public key"))
    path = Path(public_key)
    if not path.is_file():
        raise BundleError(f"public key file {path} not found")
    return VerifyKey(_key_bytes(path.read_bytes(), str(path)))


def load_signing_key(secret_key: bytes | str | Path) -> SigningKey:
    if isinstance(secret_key, bytes):
        return SigningKey(_key_bytes(secret_key, "signing key"))
    path = Path(secret_key)
    if not path.is_file():
        raise BundleError(f"signing key file {path} not found")
    return SigningKey(_key_bytes(path.read_bytes(), str(path)))


def generate_keypair(out_dir: Path, name: str = "bundle_signing") -> tuple[Path, Path]:
    """Write ``{name}.key`` (secret, mode 0600) and ``{name}.pub`` as hex; refuses to overwrite."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise BundleError(f"{p} already exists; not overwriting a key")
    sk = SigningKey.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(sk).hex() + "\n")
    pub_path.write_text(bytes(sk.verify_key).hex() + "\n", encoding="ascii")
    return key_path, pub_path


def sign_bundle(root: Path, secret_key: bytes | str | Path) -> Path:
    """Write ``manifest.sig``: the detached ed25519 signature of ``manifest.yaml``'s bytes."""
    root = Path(root)
    sk = load_signing_key(secret_key)
    sig = sk.sign((root / MANIFEST_FILE).read_bytes()).signature
    out = root / SIGNATURE_FILE
    out.write_bytes(sig)
    return out


# -- the bundle ---------------------------------------------------------------------------------


@dataclass
class Bundle:
    """An opened bundle. ``parent`` is set for adapter-only bundles opened with their parent."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    signature_verified: bool = False
    files_verified: bool = False
    parent: Bundle | None = None
    _extra: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def is_adapter_update(self) -> bool:
        return self.manifest.kind == "adapter_update"

    def graph(self, role: str = "encoder") -> GraphEntry:
        try:
            return self.manifest.graphs[role]
        except KeyError:
            raise BundleError(
                f"bundle {self.root}: no graph {role!r} (has {sorted(self.manifest.graphs)})"
            ) from None

    def graph_file(self, role: str = "encoder") -> Path:
        entry = self.graph(role)
        if not entry.from_parent:
            return self.root / entry.file
        local = self.root / entry.file
        if local.is_file() and local.stat().st_size > 0 and sha256_file(local) == entry.sha256:
            return local  # a registry may materialise the parent's graph next to the update
        if self.parent is None:
            raise BundleError(
                f"bundle {self.root}: graph {role!r} lives in parent bundle "
                f"{self.manifest.parent.name if self.manifest.parent else '?'}"
                f"@{self.manifest.parent.version if self.manifest.parent else '?'}; open it with parent=..."
            )
        return self.parent.graph_file(role)

    def tokenizer_file(self) -> Path:
        tok = self.manifest.tokenizer
        if tok.from_parent:
            if self.parent is None:
                raise BundleError(
                    f"bundle {self.root}: tokenizer lives in the parent bundle; open it with parent=..."
                )
            return self.parent.tokenizer_file()
        return self.root / tok.file

    def adapter_file(self, adapter_set: str | None = None) -> Path:
        name = adapter_set or self.manifest.default_adapter_set
        entry = self.manifest.adapter_sets.get(name)
        if entry is None:
            raise BundleError(
                f"bundle {self.root}: no adapter set {name!r} (has {sorted(self.manifest.adapter_sets)})"
            )
        return self.root / entry.file

    def file(self, role_or_name: str) -> Path:
        """A graph role (``encoder``, ``hop_scorer``…), ``tokenizer``, ``adapter:<set>`` or a file name."""
        if role_or_name in self.manifest.graphs:
            return self.graph_file(role_or_name)
        if role_or_name == "tokenizer":
            return self.tokenizer_file()
        if role_or_name.startswith("adapter:"):
            return self.adapter_file(role_or_name.split(":", 1)[1])
        if role_or_name in self.manifest.files:
            return self.root / role_or_name
        raise BundleError(f"bundle {self.root}: no graph role or file {role_or_name!r}")

    def verify(self, public_key: bytes | str | Path | None = None) -> None:
        """Re-run the signature and file checks (e.g. before a hot swap)."""
        self.signature_verified = _check_signature(self.root, public_key)
        _check_files(self.root, self.manifest)
        self.files_verified = True
        if self.parent is not None:
            _check_parent(self, self.parent)


def _read_manifest(root: Path) -> tuple[Manifest, str]:
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{root}: not a bundle (no {MANIFEST_FILE})")
    raw = path.read_bytes()
    return Manifest.from_yaml(raw, str(path)), sha256_bytes(raw)


def _check_signature(root: Path, public_key: bytes | str | Path | None) -> bool:
    sig_path = root / SIGNATURE_FILE
    if public_key is None:
        return False
    vk = load_verify_key(public_key)
    if not sig_path.is_file():
        raise BundleError(
            f"{root}: bundle is not signed ({SIGNATURE_FILE} missing) but a public key was given"
        )
    try:
        vk.verify((root / MANIFEST_FILE).read_bytes(), sig_path.read_bytes())
    except (BadSignatureError, ValueError) as exc:
        raise BundleError(
            f"{root}: bad signature: {SIGNATURE_FILE} does not match {MANIFEST_FILE} and the public key"
        ) from exc
    return True


def _check_files(root: Path, manifest: Manifest) -> None:
    for name, entry in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}: missing file {name!r} listed in the manifest")
        size = path.stat().st_size
        if size != entry.size:
            kind = "truncated" if size < entry.size else "wrong size"
            raise BundleError(f"{root}: file {name!r} is {kind}: {size} bytes, manifest says {entry.size}")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise BundleError(
                f"{root}: file {name!r} sha256 mismatch: {actual[:16]}…, "
                f"manifest says {entry.sha256[:16]}… (modified?)"
            )


def _check_parent(bundle: Bundle, parent: Bundle) -> None:
    ref = bundle.manifest.parent
    if ref is None:
        raise BundleError(f"{bundle.root}: a parent was given but the manifest names none")
    if parent.manifest_sha256 != ref.manifest_sha256:
        raise BundleError(
            f"{bundle.root}: parent {parent.root} is {parent.manifest.name}@{parent.manifest.version} "
            f"(manifest {parent.manifest_sha256[:12]}…), the update needs {ref.name}@{ref.version} "
            f"(manifest {ref.manifest_sha256[:12]}…)"
        )
    for role, graph in bundle.manifest.graphs.items():
        if graph.from_parent:
            theirs = parent.manifest.graphs.get(role)
            if theirs is None or theirs.sha256 != graph.sha256:
                raise BundleError(
                    f"{bundle.root}: parent bundle does not carry graph {role!r} "
                    f"with sha256 {graph.sha256[:12]}…"
                )


def open_bundle(
    path: Path | str,
    public_key: bytes | str | Path | None = None,
    verify: bool = True,
    *,
    parent: Bundle | Path | str | None = None,
) -> Bundle:
    """Open (and by default verify) a bundle directory. ``parent``: for adapter-only bundles."""
    root = Path(path)
    if root.is_file() and tarfile.is_tarfile(root):
        raise BundleError(f"{root} is a bundle archive; unpack it first (contracts.bundle.unpack_bundle)")
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    manifest, msha = _read_manifest(root)
    bundle = Bundle(root=root, manifest=manifest, manifest_sha256=msha)
    if parent is not None:
        bundle.parent = parent if isinstance(parent, Bundle) else open_bundle(parent, public_key, verify)
    if verify:
        bundle.verify(public_key)
    elif bundle.parent is not None:
        _check_parent(bundle, bundle.parent)
    return bundle


# -- archives -----------------------------------------------------------------------------------


def pack_bundle(root: Path, archive: Path) -> Path:
    """One tar file (gzip when the name ends in .gz / .tgz) with the bundle's files at its top level."""
    root, archive = Path(root), Path(archive)
    manifest, _ = _read_manifest(root)
    names = [MANIFEST_FILE]
    if (root / SIGNATURE_FILE).is_file():
        names.append(SIGNATURE_FILE)
    names += sorted(manifest.files)
    mode = "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w"
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".partial")
    with tarfile.open(tmp, mode) as tar:  # type: ignore[call-overload]
        for name in names:
            info = tar.gettarinfo(str(root / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(root / name, "rb") as fh:
                tar.addfile(info, fh)
    tmp.replace(archive)
    return archive


def unpack_bundle(archive: Path, dest: Path) -> Path:
    """Extract an archive made by :func:`pack_bundle` into ``dest`` (must be empty or absent)."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise BundleError(f"{archive}: no such bundle archive")
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest}: destination is not empty")
    try:
        if not tarfile.is_tarfile(archive):
            raise BundleError(f"{archive}: not a tar archive")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name
                if not (member.isfile() or member.isdir()):
                    raise BundleError(
                        f"{archive}: member {name!r} is not a regular file (links and devices are refused)"
                    )
                if name.startswith("/") or ".." in Path(name).parts:
                    raise BundleError(f"{archive}: member {name!r} would leave the destination")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BundleError(f"{archive}: {archive_problem(exc)}") from None
    if not (dest / MANIFEST_FILE).is_file():
        raise BundleError(f"{archive}: no {MANIFEST_FILE} at the archive's top level")
    return dest


def read_manifest_from_archive(archive: Path) -> Manifest:
    """The manifest of a packed bundle without extracting the rest."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.extractfile(MANIFEST_FILE)
            if member is None:
                raise BundleError(f"{archive}: no {MANIFEST_FILE}")
            raw = io.BytesIO(member.read()).getvalue()
    except KeyError:
        raise BundleError(f"{archive}: no {MANIFEST_FILE}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BundleError(f"{archive}: {archive_problem(exc)}") from None
    return Manifest.from_yaml(raw, f"{archive}!{MANIFEST_FILE}")


def archive_problem(exc: BaseException) -> str:
    """One line naming what is wrong with an unreadable archive (truncated, not gzip, unreadable)."""
    if isinstance(exc, EOFError) or "unexpected end of data" in str(exc) or "truncated" in str(exc).lower():
        return f"the tar archive is truncated or corrupt (it ends early: {exc or type(exc).__name__})"
    if isinstance(exc, zlib.error):
        return f"the archive's gzip data is corrupt ({exc})"
    if isinstance(exc, tarfile.TarError):
        return f"not a readable tar archive ({exc})"
    return f"cannot read the archive ({exc})"
