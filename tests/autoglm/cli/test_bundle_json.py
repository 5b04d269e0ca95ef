"""`autoglm bundle … --json`: machine-readable output of keygen, pack, unpack and verify."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autoglm.cli import app
from tests.contracts.bundle_factory import make_bundle


def _json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["bundle", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_bundle_commands_print_json(tmp_path: Path) -> None:
    keys = _json("keygen", "--out", str(tmp_path / "keys"))
    assert Path(str(keys["public_key"])).is_file() and Path(str(keys["secret_key"])).is_file()
    bundle = make_bundle(tmp_path / "b")
    packed = _json("pack", str(bundle), str(tmp_path / "b.tar"))
    assert packed["archive"] == str(tmp_path / "b.tar")
    unpacked = _json("unpack", str(tmp_path / "b.tar"), str(tmp_path / "u"))
    assert Path(str(unpacked["bundle"])).is_dir()
    report = _json("verify", str(tmp_path / "b.tar"), "--no-load")
    assert report["files_verified"] and report["signature"] == "none" and report["smoke"] == {}
