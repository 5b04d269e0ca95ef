"""`autoglm bundle verify|keygen|pack|unpack`: check and handle bundles (no torch needed)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from autoglm.cli.common import console, fail, print_json, usage

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of text.")]


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    bundle_app = typer.Typer(help="Verify, sign and pack model bundles.", no_args_is_help=True)
    app.add_typer(bundle_app, name="bundle")

    @bundle_app.command("verify")
    def verify(
        path: Annotated[Path, typer.Argument(help="Bundle directory or archive (.tar / .tar.gz).")],
        public_key: Annotated[
            Path | None, typer.Option("--public-key", help="ed25519 public key file.")
        ] = None,
        parent: Annotated[
            Path | None, typer.Option("--parent", help="Parent bundle of an adapter-only update.")
        ] = None,
        no_load: Annotated[bool, typer.Option("--no-load", help="Skip loading in ONNX Runtime.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Schema, hashes, signature, then load in ONNX Runtime and run a smoke inference per adapter set."""
        from contracts.bundle import open_bundle, unpack_bundle
        from contracts.errors import BundleError

        for flag, p in (("PATH", path), ("--public-key", public_key), ("--parent", parent)):
            if p is not None and not p.exists():
                usage(f"{flag} {p}: no such file or directory")
        report: dict[str, object] = {"path": str(path)}
        say = (lambda _text: None) if as_json else (lambda text: console.print(text))
        with tempfile.TemporaryDirectory(prefix="autoglm-verify-") as tmp:
            root = path
            try:
                if path.is_file():
                    root = unpack_bundle(path, Path(tmp) / "bundle")
                bundle = open_bundle(root, public_key=public_key, verify=True, parent=parent)
                m = bundle.manifest
                report.update(
                    {
                        "name": m.name,
                        "version": m.version,
                        "schema_version": m.schema_version,
                        "kind": str(m.kind),
                        "precision": str(m.precision),
                        "files_verified": len(m.files),
                    }
                )
                say(
                    f"manifest ok: {m.name}@{m.version} schema {m.schema_version}, {m.kind}, {m.precision}, "
                    f"{len(m.files)} files verified"
                )
                report["signature"] = (
                    "verified"
                    if public_key is not None
                    else "present, not checked"
                    if (root / "manifest.sig").is_file()
                    else "none"
                )
                if public_key is not None:
                    say("signature ok")
                elif (root / "manifest.sig").is_file():
                    say("[yellow]signature present but not checked (no --public-key)[/]")
                smoke: dict[str, object] = {}
                if not no_load:
                    from edge.runtime.bundle_session import smoke_test

                    for set_name in m.adapter_sets:
                        result = smoke_test(bundle, set_name)
                        smoke[set_name] = {"provider": result["providers"][0], "routes": result["routes"]}
                        say(
                            f"smoke inference ok: adapter set {set_name!r} on {result['providers'][0]} "
                            f"-> {result['routes']}"
                        )
                report["smoke"] = smoke
            except BundleError as exc:
                fail(exc.message)
        if as_json:
            print_json(report)

    @bundle_app.command("keygen")
    def keygen(
        out: Annotated[Path, typer.Option("--out", help="Directory for NAME.key and NAME.pub.")] = Path("."),
        name: Annotated[str, typer.Option(help="Key file base name.")] = "bundle_signing",
        as_json: JsonOpt = False,
    ) -> None:
        """Create an ed25519 signing key (NAME.key, mode 0600) and its public key (NAME.pub)."""
        from contracts.bundle import generate_keypair
        from contracts.errors import BundleError

        try:
            key, pub = generate_keypair(out, name)
        except BundleError as exc:
            fail(exc.message)
        if as_json:
            print_json({"secret_key": str(key), "public_key": str(pub)})
            return
        console.print(f"secret key -> {key}\npublic key -> {pub}")

    @bundle_app.command("pack")
    def pack(
        path: Annotated[Path, typer.Argument(help="Bundle directory.")],
        archive: Annotated[Path, typer.Argument(help="Archive to write (.tar or .tar.gz).")],
        as_json: JsonOpt = False,
    ) -> None:
        """Pack a bundle directory into one archive."""
        from contracts.bundle import pack_bundle
        from contracts.errors import BundleError

        try:
            out = pack_bundle(path, archive)
        except BundleError as exc:
            fail(exc.message)
        print_json({"archive": str(out)}) if as_json else console.print(f"archive -> {out}")

    @bundle_app.command("unpack")
    def unpack(
        archive: Annotated[Path, typer.Argument(help="Bundle archive.")],
        dest: Annotated[Path, typer.Argument(help="Empty or absent directory.")],
        as_json: JsonOpt = False,
    ) -> None:
        """Unpack a bundle archive (refuses links and paths that leave DEST)."""
        from contracts.bundle import unpack_bundle
        from contracts.errors import BundleError

        try:
            out = unpack_bundle(archive, dest)
        except BundleError as exc:
            fail(exc.message)
        print_json({"bundle": str(out)}) if as_json else console.print(f"bundle -> {out}")
