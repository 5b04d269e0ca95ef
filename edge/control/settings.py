"""Edge control-plane settings (env prefix ``AUTOGLM_EDGE_``, YAML section ``edge``, fields ``control_*``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.settings import AutoGLMSettings


class ControlSettings(AutoGLMSettings):
    """How the node reaches the cloud registry and applies the versions it is told to run."""

    yaml_section: ClassVar[str] = "edge"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_EDGE_", extra="ignore", validate_default=True)

    control_cloud_url: str = Field(
        default="", description="Base URL of the cloud controller (registry downloads, node registration)."
    )
    control_node_token: str = Field(default="", description="This node's bearer token for the cloud API.")
    control_bootstrap_token: str = Field(
        default="", description="Bootstrap token: register the node at start when no node token is set."
    )
    control_node_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels sent when the node registers (site, group, hardware)."
    )
    control_download_timeout_s: float = Field(
        default=60.0, gt=0, description="Timeout of one HTTP request to the registry (connect/read)."
    )
    control_download_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of a failed file download (each resumes where the last stopped).",
    )
    control_apply_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest a command may take to download, verify and hot-swap a version.",
    )
    control_restore_last_good: bool = Field(
        default=True,
        description="At start, serve the last-known-good bundle from the model cache (no cloud needed).",
    )
    control_model_name: str = Field(
        default="",
        description="Model a KubeEdge desired_model_version refers to (default: the model served now).",
    )
    control_keep_versions: int = Field(
        default=4,
        ge=1,
        description="Per-version dirs kept in the model cache (older, unused ones are pruned).",
    )
