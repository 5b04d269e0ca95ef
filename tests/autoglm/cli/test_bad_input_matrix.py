"""The bad-input matrix: every wrong setting, YAML file, path, port and flag a user can hand the
installed ``autoglm`` gets exactly one line on stderr naming the problem, exit code 2 (usage) or
1 (failure), and never a traceback.

Each case is a real subprocess of the installed console script (no in-process runner: that is what
a user runs). Every case fails before anything starts serving; they run two at a time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("autoglm")
COMMAND = [str(BIN)] if BIN.is_file() else [sys.executable, "-m", "autoglm"]


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    code: int  # 2: usage (the user's input), 1: failure
    names: str  # the stderr line must contain this (the variable, key, flag or path)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def _files(root: Path) -> dict[str, str]:
    """The YAML files, bundles and paths the cases refer to (``{name}`` in args and env)."""
    (root / "not-a-bundle").mkdir()
    (root / "not-a-bundle" / "weights.onnx").write_bytes(b"\0")
    (root / "fake-bundle").mkdir()
    (root / "fake-bundle" / "manifest.yaml").write_text("name: x\n")  # enough to reach the port check
    yamls = {
        "bad_yaml": "edge: [\n",
        "list_yaml": "- edge\n- cloud\n",
        "scalar_yaml": "just a string\n",
        "typo_key": "edge:\n  http_prot: 9000\n",
        "typo_section": "egde:\n  http_port: 9000\n",
        "scalar_section": "edge: 5\n",
        "bad_value": "edge:\n  http_port: abc\n",
        "bad_cloud_value": "cloud:\n  http_port: notaport\n",
        "bad_export_key": "export:\n  onnx_opset_version: 17\n",
        "bad_agent_value": "edge:\n  agent_kg_scorer: magic\n",
        "bad_bool": "edge:\n  mqtt_tls: sometimes\n",
    }
    out = {
        "root": str(root),
        "missing": str(root / "missing"),
        "not_a_bundle": str(root / "not-a-bundle"),
        "fake_bundle": str(root / "fake-bundle"),
        "text_file": str(root / "plain.txt"),
    }
    (root / "plain.txt").write_text("not an archive\n")
    for name, text in yamls.items():
        (root / f"{name}.yaml").write_text(text)
        out[name] = str(root / f"{name}.yaml")
    return out


def _busy_port() -> Iterator[tuple[socket.socket, int]]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s, s.getsockname()[1]


DEAD = "http://127.0.0.1:9"  # discard port: nothing listens


def cases(busy: int) -> list[Case]:
    serve_x = ["edge", "serve", "--bundle", "{fake_bundle}", "--port", "0"]
    c = Case
    return [
        # -- environment variables ---------------------------------------------------------------
        c(
            "env-edge-port-abc",
            ["edge", "serve", "--bundle", "{fake_bundle}"],
            2,
            "AUTOGLM_EDGE_HTTP_PORT",
            {"AUTOGLM_EDGE_HTTP_PORT": "abc"},
        ),
        c(
            "env-edge-port-range",
            ["edge", "serve", "--bundle", "{fake_bundle}"],
            2,
            "AUTOGLM_EDGE_HTTP_PORT",
            {"AUTOGLM_EDGE_HTTP_PORT": "70000"},
        ),
        c("env-providers-unknown", serve_x, 2, "AUTOGLM_EDGE_PROVIDERS", {"AUTOGLM_EDGE_PROVIDERS": "gpu"}),
        c("env-providers-bad-json", serve_x, 2, "AUTOGLM_EDGE_PROVIDERS", {"AUTOGLM_EDGE_PROVIDERS": "[cpu"}),
        c(
            "env-batch-zero",
            serve_x,
            2,
            "AUTOGLM_EDGE_SERVE_MAX_BATCH_SIZE",
            {"AUTOGLM_EDGE_SERVE_MAX_BATCH_SIZE": "0"},
        ),
        c(
            "env-cache-negative",
            serve_x,
            2,
            "AUTOGLM_EDGE_CACHE_MAX_BYTES",
            {"AUTOGLM_EDGE_CACHE_MAX_BYTES": "-1"},
        ),
        c(
            "env-bool",
            serve_x,
            2,
            "AUTOGLM_EDGE_ORT_ALLOW_SPINNING",
            {"AUTOGLM_EDGE_ORT_ALLOW_SPINNING": "maybe"},
        ),
        c("env-log-format", serve_x, 2, "AUTOGLM_LOG_FORMAT", {"AUTOGLM_LOG_FORMAT": "xml"}),
        c(
            "env-admin-tokens-json",
            ["cloud", "models"],
            2,
            "AUTOGLM_CLOUD_ADMIN_TOKENS",
            {"AUTOGLM_CLOUD_ADMIN_TOKENS": "[1"},
        ),
        c(
            "env-cloud-port",
            ["cloud", "serve"],
            2,
            "AUTOGLM_CLOUD_HTTP_PORT",
            {"AUTOGLM_CLOUD_HTTP_PORT": "notaport"},
        ),
        c(
            "env-cloud-bool",
            ["cloud", "serve"],
            2,
            "AUTOGLM_CLOUD_MQTT_ENABLED",
            {"AUTOGLM_CLOUD_MQTT_ENABLED": "perhaps"},
        ),
        c(
            "env-cloud-lease",
            ["cloud", "serve"],
            2,
            "AUTOGLM_CLOUD_LEADER_LEASE_TTL_S",
            {"AUTOGLM_CLOUD_LEADER_LEASE_TTL_S": "0"},
        ),
        c(
            "env-cloud-log-level",
            ["cloud", "serve"],
            2,
            "AUTOGLM_CLOUD_LOG_LEVEL",
            {"AUTOGLM_CLOUD_LOG_LEVEL": "LOUD"},
        ),
        c(
            "env-api-url",
            ["cloud", "models"],
            2,
            "AUTOGLM_CLOUD_API_URL",
            {"AUTOGLM_CLOUD_API_URL": "ftp://x"},
        ),
        # a bad server-only setting does not break a client command: it fails on the network instead
        c(
            "env-server-only-ignored",
            ["cloud", "models", "--url", DEAD],
            1,
            "cannot reach the controller",
            {"AUTOGLM_CLOUD_HTTP_PORT": "notaport"},
        ),
        c(
            "env-mqtt-port",
            ["edge", "run", "--bundle", "{fake_bundle}"],
            2,
            "AUTOGLM_EDGE_MQTT_PORT",
            {"AUTOGLM_EDGE_MQTT_PORT": "0"},
        ),
        c(
            "env-node-labels",
            ["edge", "run", "--bundle", "{fake_bundle}"],
            2,
            "AUTOGLM_EDGE_CONTROL_NODE_LABELS",
            {"AUTOGLM_EDGE_CONTROL_NODE_LABELS": "oops"},
        ),
        c(
            "env-agent-threshold",
            ["ask", "hi"],
            2,
            "AUTOGLM_EDGE_AGENT_CONFIDENCE_THRESHOLD",
            {"AUTOGLM_EDGE_AGENT_CONFIDENCE_THRESHOLD": "2"},
        ),
        c(
            "env-export-opset",
            ["config", "show", "export"],
            2,
            "AUTOGLM_EXPORT_ONNX_OPSET",
            {"AUTOGLM_EXPORT_ONNX_OPSET": "9"},
        ),
        # -- the YAML file -----------------------------------------------------------------------
        c("yaml-missing", ["config", "show"], 2, "AUTOGLM_CONFIG", {"AUTOGLM_CONFIG": "{missing}"}),
        c("yaml-is-a-directory", ["config", "show"], 2, "AUTOGLM_CONFIG", {"AUTOGLM_CONFIG": "{root}"}),
        c("yaml-invalid", serve_x, 2, "invalid YAML", {"AUTOGLM_CONFIG": "{bad_yaml}"}),
        c("yaml-top-level-list", serve_x, 2, "top level", {"AUTOGLM_CONFIG": "{list_yaml}"}),
        c("yaml-top-level-scalar", ["config", "show"], 2, "top level", {"AUTOGLM_CONFIG": "{scalar_yaml}"}),
        c("yaml-unknown-key", serve_x, 2, "edge.http_prot", {"AUTOGLM_CONFIG": "{typo_key}"}),
        c("yaml-unknown-section", ["config", "show"], 2, "egde", {"AUTOGLM_CONFIG": "{typo_section}"}),
        c(
            "yaml-scalar-section",
            ["config", "show", "edge"],
            2,
            "section 'edge'",
            {"AUTOGLM_CONFIG": "{scalar_section}"},
        ),
        c(
            "yaml-bad-value",
            ["edge", "serve", "--bundle", "{fake_bundle}"],
            2,
            "edge.http_port",
            {"AUTOGLM_CONFIG": "{bad_value}"},
        ),
        c(
            "yaml-bad-cloud-value",
            ["cloud", "serve"],
            2,
            "cloud.http_port",
            {"AUTOGLM_CONFIG": "{bad_cloud_value}"},
        ),
        c(
            "yaml-unknown-export-key",
            ["config", "show", "export"],
            2,
            "export.onnx_opset_version",
            {"AUTOGLM_CONFIG": "{bad_export_key}"},
        ),
        c(
            "yaml-bad-agent-value",
            ["ask", "hi"],
            2,
            "edge.agent_kg_scorer",
            {"AUTOGLM_CONFIG": "{bad_agent_value}"},
        ),
        c(
            "yaml-bad-bool",
            ["edge", "run", "--bundle", "{fake_bundle}"],
            2,
            "edge.mqtt_tls",
            {"AUTOGLM_CONFIG": "{bad_bool}"},
        ),
        # -- paths -------------------------------------------------------------------------------
        c("serve-bundle-missing", ["edge", "serve", "--bundle", "{missing}"], 2, "--bundle"),
        c("serve-bundle-no-manifest", ["edge", "serve", "--bundle", "{not_a_bundle}"], 2, "manifest.yaml"),
        c(
            "serve-bundle-env-missing",
            ["edge", "serve"],
            2,
            "AUTOGLM_EDGE_BUNDLE_DIR",
            {"AUTOGLM_EDGE_BUNDLE_DIR": "{missing}"},
        ),
        c("serve-no-bundle", ["edge", "serve"], 2, "--bundle"),
        c("run-bundle-missing", ["edge", "run", "--bundle", "{missing}"], 2, "--bundle"),
        c("verify-missing", ["bundle", "verify", "{missing}"], 2, "no such file"),
        c("verify-not-a-bundle", ["bundle", "verify", "{not_a_bundle}", "--no-load"], 1, "manifest"),
        c(
            "verify-key-missing",
            ["bundle", "verify", "{not_a_bundle}", "--public-key", "{missing}"],
            2,
            "--public-key",
        ),
        c("unpack-not-an-archive", ["bundle", "unpack", "{text_file}", "{root}/out"], 1, "plain.txt"),
        c("register-missing", ["cloud", "register", "{missing}", "--url", DEAD], 2, "missing"),
        c("ask-bundle-missing", ["ask", "hi", "--bundle", "{missing}"], 2, "--bundle"),
        # -- ports -------------------------------------------------------------------------------
        c("serve-port-range", ["edge", "serve", "--port", "70000"], 2, "--port"),
        c("serve-port-abc", ["edge", "serve", "--port", "abc"], 2, "--port"),
        c("run-port-negative", ["edge", "run", "--port", "-1"], 2, "--port"),
        c("cloud-port-range", ["cloud", "serve", "--port", "0"], 2, "--port"),
        c(
            "serve-port-in-use",
            ["edge", "serve", "--bundle", "{fake_bundle}", "--host", "127.0.0.1", "--port", str(busy)],
            2,
            str(busy),
        ),
        # -- flags and arguments -----------------------------------------------------------------
        c("unknown-flag", ["edge", "serve", "--bogus"], 2, "--bogus"),
        c("unknown-command", ["cloud", "nope"], 2, "nope"),
        c("ask-empty", ["ask", ""], 2, "empty"),
        c("ask-blank", ["ask", "   "], 2, "empty"),
        c("ask-priority", ["ask", "hi", "--priority", "99"], 2, "--priority"),
        c("ask-url", ["ask", "hi", "--url", "localhost:8000"], 2, "--url"),
        c("ask-unreachable", ["ask", "hi", "--url", DEAD], 1, "not reachable"),
        c(
            "steps-not-a-number",
            ["cloud", "rollout", "create", "m", "1.0.0", "--steps", "5,abc"],
            2,
            "--steps",
        ),
        c("steps-decreasing", ["cloud", "rollout", "create", "m", "1.0.0", "--steps", "50,20"], 2, "--steps"),
        c("steps-over-100", ["cloud", "rollout", "create", "m", "1.0.0", "--steps", "50,150"], 2, "--steps"),
        c("selector-not-kv", ["cloud", "rollout", "create", "m", "1.0.0", "-l", "site"], 2, "--selector"),
        c("rollout-id-zero", ["cloud", "rollout", "promote", "0"], 2, "ROLLOUT_ID"),
        c("label-not-kv", ["cloud", "label", "n1", "gpu"], 2, "key=value"),
        c(
            "log-level",
            ["edge", "serve", "--bundle", "{fake_bundle}", "--log-level", "LOUD"],
            2,
            "--log-level",
        ),
        c("config-side", ["config", "show", "moon"], 2, "moon"),
        c("bench-unknown", ["bench", "run", "nope"], 2, "nope"),
        c("models-unreachable", ["cloud", "models", "--url", DEAD], 1, "cannot reach the controller"),
        c("cloud-url-scheme", ["cloud", "nodes", "--url", "127.0.0.1:8080"], 2, "--url"),
    ]


def _env(extra: dict[str, str], files: dict[str, str], tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    env.update({"AUTOGLM_DATA_DIR": str(tmp / "data"), "NO_COLOR": "1", "COLUMNS": "80"})
    env.update({k: v.format(**files) for k, v in extra.items()})
    return env


def _run(case: Case, files: dict[str, str], tmp: Path) -> Result:
    args = [a.format(**files) for a in case.args]
    p = subprocess.run(
        [*COMMAND, *args],
        env=_env(case.env, files, tmp),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Case, Result]]]:
    tmp = tmp_path_factory.mktemp("bad-input")
    files = _files(tmp)
    for sock, port in _busy_port():
        all_cases = cases(port)
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda c: _run(c, files, tmp), all_cases))
        sock.close()
        yield {c.id: (c, r) for c, r in zip(all_cases, results, strict=True)}


def test_the_matrix_has_at_least_40_cases() -> None:
    ids = [c.id for c in cases(1)]
    assert len(ids) >= 40 and len(ids) == len(set(ids))


@pytest.mark.parametrize("case_id", [c.id for c in cases(1)])
def test_bad_input_is_one_line_and_an_exit_code(case_id: str, matrix: dict[str, tuple[Case, Result]]) -> None:
    case, result = matrix[case_id]
    shown = f"exit {result.code}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout[-2000:]}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    assert case.names.lower() in lines[0].lower(), shown
    assert result.code == case.code, shown
