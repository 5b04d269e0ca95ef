"""`autoglm config show|docs`, `--version` and completion, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from autoglm.cli.config_cmd import all_settings_classes, documented_classes, render_settings_blocks, repo_root
from tests.autoglm.cli.test_bad_input_matrix import COMMAND


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    return subprocess.run(
        [*COMMAND, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def test_every_settings_class_has_an_up_to_date_table_in_its_area_document() -> None:
    docs = sorted(repo_root().glob("docs/arch/*.md"))
    texts = [p.read_text(encoding="utf-8") for p in docs]
    assert {c.__name__ for c in all_settings_classes()} <= documented_classes(texts)
    for path, text in zip(docs, texts, strict=True):
        assert render_settings_blocks(text) == text, f"{path.name}: run `autoglm config docs`"


def test_config_show_says_where_each_value_came_from_and_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "autoglm.yaml"
    cfg.write_text("cloud:\n  http_port: 9090\n  database_url: postgresql+psycopg://app:s3cret@db/autoglm\n")
    env = {
        "AUTOGLM_CONFIG": str(cfg),
        "AUTOGLM_CLOUD_ADMIN_TOKENS": "alice:tok-1,bob:tok-2",
        "AUTOGLM_CLOUD_BOOTSTRAP_TOKEN": "boot",
        "AUTOGLM_CLOUD_HTTP_PORT": "9191",
    }
    p = _run("config", "show", "cloud", "--json", env=env)
    assert p.returncode == 0, p.stderr
    rows = {r["env"]: r for r in json.loads(p.stdout)}
    assert rows["AUTOGLM_CLOUD_HTTP_PORT"]["value"] == 9191
    assert rows["AUTOGLM_CLOUD_HTTP_PORT"]["origin"] == "env AUTOGLM_CLOUD_HTTP_PORT"  # env beats the file
    assert rows["AUTOGLM_CLOUD_DATABASE_URL"]["origin"] == f"yaml {cfg} cloud.database_url"
    assert rows["AUTOGLM_CLOUD_DATABASE_URL"]["value"] == "postgresql+psycopg://app:***@db/autoglm"
    assert rows["AUTOGLM_CLOUD_ADMIN_TOKENS"]["value"] == ["alice:***", "bob:***"]
    assert rows["AUTOGLM_CLOUD_BOOTSTRAP_TOKEN"]["value"] == "***"
    assert rows["AUTOGLM_CLOUD_MQTT_HOST"]["origin"] == "default"
    assert "s3cret" not in p.stdout and "tok-1" not in p.stdout and 'boot"' not in p.stdout
    assert "AUTOGLM_CLOUD_SYNC_MQTT_HOST" in rows  # every class of the side

    table = _run("config", "show", "--changed", env=env)  # all sides, a table, not truncated when piped
    assert table.returncode == 0, table.stderr
    assert f"yaml {cfg} cloud.database_url" in table.stdout and "AUTOGLM_EDGE_HTTP_PORT" not in table.stdout


def test_version_and_completion() -> None:
    p = _run("--version")
    assert p.returncode == 0 and p.stdout.startswith("autoglm ") and p.stderr == ""
    p = _run("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert p.returncode == 0 and "_autoglm_completion" in p.stdout and "complete " in p.stdout


def test_masking_hides_secrets_only() -> None:
    from autoglm.cli.config_cmd import masked

    assert masked("mqtt_password", "pw") == "***" and masked("control_node_token", "t") == "***"
    assert masked("admin_tokens", ["alice:t1", "t2"]) == ["alice:***", "***"]
    assert masked("serve_bucket_overhead_tokens", 32) == 32  # a count, not a secret
    assert masked("mqtt_tls_key_file", "/etc/k.pem") == "/etc/k.pem"  # a path
    assert masked("http_admin_token", "") == ""  # unset stays visibly unset


def test_piped_output_never_truncates_but_rules_stay_short() -> None:
    import io

    from autoglm.cli.common import PIPED_RULE_WIDTH, PipedConsole

    out = io.StringIO()
    c = PipedConsole(file=out, width=100_000, soft_wrap=True)
    c.rule("Stage 1")
    c.print("x" * 500)
    first, second = out.getvalue().splitlines()
    assert "Stage 1" in first and len(first) == PIPED_RULE_WIDTH
    assert second == "x" * 500
