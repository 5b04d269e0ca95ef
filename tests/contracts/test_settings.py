"""contracts.settings: sources, precedence, strict YAML and one-line errors naming the variable or key."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.settings import AutoGLMSettings, ConfigError
from edge.control.settings import ControlSettings
from edge.settings import ServeSettings
from edge.sync.settings import SyncSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("AUTOGLM_"):
            monkeypatch.delenv(key)


def _yaml(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "autoglm.yaml"
    path.write_text(text)
    monkeypatch.setenv("AUTOGLM_CONFIG", str(path))
    return path


def test_precedence_flag_over_env_over_yaml_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _yaml(
        tmp_path, "edge:\n  http_port: 9001\n  node_id: from-yaml\n  serve_max_batch_size: 8\n", monkeypatch
    )
    monkeypatch.setenv("AUTOGLM_EDGE_HTTP_PORT", "9002")
    s = ServeSettings(serve_max_batch_size=4)
    assert (s.http_port, s.node_id, s.serve_max_batch_size, s.http_host) == (9002, "from-yaml", 4, "0.0.0.0")
    assert ServeSettings.origin("http_port") == "env AUTOGLM_EDGE_HTTP_PORT"
    assert ServeSettings.origin("node_id") == f"yaml {path} edge.node_id"
    assert ServeSettings.origin("http_host") == "default"
    assert ServeSettings.origin("serve_max_batch_size", {"serve_max_batch_size": 4}) == "flag"


def test_env_lists_and_dicts_take_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_EDGE_PROVIDERS", "cuda, cpu")
    assert ServeSettings().providers == ["cuda", "cpu"]
    monkeypatch.setenv("AUTOGLM_EDGE_PROVIDERS", '["cpu"]')
    assert ServeSettings().providers == ["cpu"]
    monkeypatch.setenv("AUTOGLM_EDGE_CONTROL_NODE_LABELS", "site=a,group=b")
    assert ControlSettings().control_node_labels == {"site": "a", "group": "b"}
    monkeypatch.setenv("AUTOGLM_EDGE_CONTROL_NODE_LABELS", "nonsense")
    with pytest.raises(ConfigError, match="AUTOGLM_EDGE_CONTROL_NODE_LABELS='nonsense'"):
        ControlSettings()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("edge: [\n", "invalid YAML at line 2"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("edge:\n  http_prot: 9000\n", "unknown key edge.http_prot (did you mean 'http_port'?)"),
        ("edgee:\n  http_port: 9000\n", "unknown section 'edgee' (did you mean 'edge'?)"),
        ("edge: 3\n", "section 'edge' must be a mapping"),
        ("edge:\n  http_port: abc\n", "edge.http_port='abc'"),
    ],
)
def test_yaml_mistakes_are_one_line(
    text: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _yaml(tmp_path, text, monkeypatch)
    with pytest.raises(ConfigError) as err:
        ServeSettings()
    assert needle in err.value.message and "\n" not in err.value.message
    assert err.value.message.startswith("AUTOGLM_CONFIG=")


def test_a_key_of_another_class_of_the_section_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mqtt_port belongs to SyncSettings, agent_site to AgentSettings: both are fine for ServeSettings
    _yaml(tmp_path, "edge:\n  mqtt_port: 1884\n  agent_site: site:x\n  http_port: 9100\n", monkeypatch)
    assert ServeSettings().http_port == 9100
    assert SyncSettings().mqtt_port == 1884


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"AUTOGLM_CONFIG=.*nope.yaml: no such file"):
        ServeSettings()


def test_env_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_EDGE_HTTP_PORT", "abc")
    with pytest.raises(ConfigError, match=r"^AUTOGLM_EDGE_HTTP_PORT='abc': Input should be a valid integer"):
        ServeSettings()


def test_partial_settings_validate_only_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloud.settings import CloudSettings

    monkeypatch.setenv("AUTOGLM_CLOUD_HTTP_PORT", "notaport")
    monkeypatch.setenv("AUTOGLM_CLOUD_API_URL", "http://cloud:8080")
    with pytest.raises(ConfigError, match="AUTOGLM_CLOUD_HTTP_PORT"):
        CloudSettings()
    before = list(AutoGLMSettings.registry)
    client = CloudSettings.partial("api_url", "admin_token")
    assert client.api_url == "http://cloud:8080" and client.admin_token == ""
    assert AutoGLMSettings.registry == before  # partial classes are not registered settings


def test_every_settings_module_is_listed_for_its_yaml_section() -> None:
    """The YAML key check knows a section's keys from SECTION_MODULES: a settings class in a module
    not listed there would make its own keys 'unknown'."""
    import ast

    from contracts.settings import SECTION_MODULES

    root = Path(__file__).resolve().parents[2]
    listed = {m for mods in SECTION_MODULES.values() for m in mods}
    found = set()
    for pkg in ("cloud", "edge", "export", "autoglm", "skillpack"):
        for path in (root / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", "") == "AutoGLMSettings" for b in node.bases
                ):
                    found.add(".".join(path.relative_to(root).with_suffix("").parts))
    assert found and found <= listed, f"add to contracts.settings.SECTION_MODULES: {sorted(found - listed)}"
