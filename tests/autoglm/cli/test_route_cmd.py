"""`autoglm add-route` as a user runs it (a real subprocess of the installed console script) on a
tiny encoder: a gate grows the checkpoint by one route (the gate is stored and loads back), and
every bad input — a missing or oversized examples file, no examples, an existing or malformed
route, a non-empty --out, a gated parent — is one stderr line and exit code 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import load_checkpoint, read_checkpoint_meta
from contracts.routes import DEFAULT_ROUTES
from tests.export.helpers import make_checkpoint

BIN = Path(sys.executable).with_name("autoglm")
COMMAND = [str(BIN)] if BIN.is_file() else [sys.executable, "-m", "autoglm"]
EXAMPLES = [
    "when is my next shift",
    "who works the night shift on friday",
    "show the shift roster for line 3",
    "am I on the early shift tomorrow",
    "下周的排班表",
    "我明天上什么班",
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("add-route")
    base = make_tiny_base(root / "base")
    return make_checkpoint(root / "ckpt", routes=list(DEFAULT_ROUTES), base_dir=base)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("examples") / "shift.txt"
    p.write_text("\n".join(EXAMPLES) + "\n\n", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def gated(ckpt: Path, examples: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gated") / "out"
    r = _run("add-route", str(ckpt), "shift_schedule", "--examples", str(examples), "--out", str(out),
             "--method", "gate", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_gate_grows_the_checkpoint(ckpt: Path, gated: tuple[Path, dict]) -> None:
    out, doc = gated
    assert doc["routes"] == [*DEFAULT_ROUTES, "shift_schedule"]
    assert doc["support"] == len(EXAMPLES)
    assert doc["gate"]["kind"] == "lr" and doc["gate"]["feature"] == "cat"
    assert doc["gate"]["word_pieces"] > 0  # the operator's gate reads them (round 8)
    assert doc["gate"]["calibration_size"] > 900  # and calibrates on altered replay copies (round 9)
    assert doc["gate"]["confidence_weight"] != 0 and doc["gate"]["claim_rate"] == 0.001  # (round 10)
    meta = read_checkpoint_meta(out)
    assert meta.training["new_route"]["method"] == "gate"
    model, _ = load_checkpoint(out)
    (gate,) = model.route_gates.values()
    assert gate.route == "shift_schedule" and gate.feature == "cat"
    assert next(iter(read_checkpoint_meta(ckpt).adapter_sets.values())).routes == list(DEFAULT_ROUTES)


def test_a_gate_that_reads_the_parents_confidence(ckpt: Path, examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    flags = ["--method", "gate", "--gate-confidence", "--no-gate-tokens", "--replay-variants", "1"]
    flags += ["--claim-rate", "0.005", "--support-variants", "2"]
    r = _run("add-route", str(ckpt), "shift_schedule", "--examples", str(examples), "--out", str(out), *flags)
    assert r.returncode == 0, r.stderr
    assert "+ the parent confidence" in r.stdout
    model, meta = load_checkpoint(out)
    (gate,) = model.route_gates.values()
    assert gate.confidence_weight != 0.0 and gate.kind == "lr" and not gate.token_weights
    assert meta.training["new_route"]["gate_config"]["replay_variants"] == 1
    assert meta.training["new_route"]["gate_config"]["support_variants"] == 2
    assert gate.calibration_size > 900  # the replay and its altered copies
    assert gate.claim_rate == 0.005


def test_proto_is_the_default(ckpt: Path, examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = _run("add-route", str(ckpt), "shift_schedule", "--examples", str(examples), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "shift_schedule" in r.stdout and "autoglm export" in r.stdout
    meta = read_checkpoint_meta(out)
    assert meta.training["new_route"]["method"] == "top"
    assert "gate" not in meta.training["new_route"]


@pytest.mark.parametrize(
    ("case", "names"),
    [
        ("missing_file", "no such file"),
        ("empty_file", "no examples"),
        ("too_big", "at most 1048576"),
        ("long_line", "line 2 has"),
        ("not_utf8", "not UTF-8"),
        ("existing_route", "already one of the model's routes"),
        ("bad_name", "must be lower-case letters"),
        ("out_not_empty", "not an empty directory"),
        ("gated_parent", "is gated"),
        ("not_a_checkpoint", "not a checkpoint directory"),
        ("feature_without_gate", "--gate-feature base needs --method gate"),
        ("confidence_without_gate", "--gate-confidence needs --method gate"),
        ("variants_without_gate", "--replay-variants 1 needs --method gate"),
        ("tokens_without_gate", "--no-gate-tokens needs --method gate"),
        ("rate_without_gate", "--claim-rate 0.01 needs --method gate"),
        ("support_variants_without_gate", "--support-variants 2 needs --method gate"),
    ],
)
def test_bad_input_is_one_line(
    case: str, names: str, ckpt: Path, examples: Path, gated: tuple[Path, dict], tmp_path: Path
) -> None:
    ex, route, parent, out = examples, "shift_schedule", ckpt, tmp_path / "out"
    if case == "missing_file":
        ex = tmp_path / "none.txt"
    elif case == "empty_file":
        ex = tmp_path / "empty.txt"
        ex.write_text("\n  \n")
    elif case == "too_big":
        ex = tmp_path / "big.txt"
        ex.write_text(("a b c\n") * 200_000)
    elif case == "long_line":
        ex = tmp_path / "long.txt"
        ex.write_text("fine\n" + "y" * 1001 + "\n")
    elif case == "not_utf8":
        ex = tmp_path / "latin1.txt"
        ex.write_bytes("schicht für morgen\n".encode("latin-1"))
    elif case == "existing_route":
        route = DEFAULT_ROUTES[0]
    elif case == "bad_name":
        route = "Shift Schedule!"
    elif case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "gated_parent":
        parent = gated[0]
        route = "another_route"
    elif case == "not_a_checkpoint":
        parent = tmp_path
    extra = {
        "feature_without_gate": ["--gate-feature", "base"],
        "confidence_without_gate": ["--gate-confidence"],
        "variants_without_gate": ["--replay-variants", "1"],
        "tokens_without_gate": ["--no-gate-tokens"],
        "rate_without_gate": ["--claim-rate", "0.01"],
        "support_variants_without_gate": ["--support-variants", "2"],
    }.get(case, [])
    r = _run("add-route", str(parent), route, "--examples", str(ex), "--out", str(out), *extra)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and names in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    if case == "out_not_empty":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not (out / "checkpoint.yaml").exists()
