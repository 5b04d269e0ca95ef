"""Web console settings (env prefix ``AUTOGLM_CLOUD_``, YAML section ``cloud``, fields ``console_*``).

The console signs in with the controller's admin tokens (``AUTOGLM_CLOUD_ADMIN_TOKENS``); the
viewer tokens here can only look. Documented in docs/arch/console.md.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.settings import AutoGLMSettings


class ConsoleSettings(AutoGLMSettings):
    """The ``/ui`` web console of the cloud controller."""

    yaml_section: ClassVar[str] = "cloud"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_CLOUD_", extra="ignore", validate_default=True)

    console_enabled: bool = Field(default=True, description="Serve the web console at /ui.")
    console_viewer_tokens: list[str] = Field(
        default_factory=list,
        description="Read-only console tokens (JSON list in env; entries like the admin tokens, optionally "
        "named). A viewer sees every page but cannot drain, label or act on rollouts.",
    )
    console_session_ttl_s: float = Field(
        default=8 * 3600.0, gt=0, description="Lifetime of a console sign-in (the session cookie)."
    )
    console_max_sessions: int = Field(
        default=1000, ge=1, description="Sign-ins kept in memory; the oldest is dropped beyond this."
    )
    console_login_burst: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Sign-in attempts a client address may make at once; failed ones use it up (then 429 "
        "with Retry-After). Successful sign-ins do not count.",
    )
    console_login_refill_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="Seconds until a client address gets one more sign-in attempt back after using up "
        "console_login_burst.",
    )
    console_page_size: int = Field(
        default=100,
        ge=10,
        le=1000,
        description="Nodes per page of the fleet table (filters apply to all nodes).",
    )
    console_poll_interval_s: float = Field(
        default=3.0, gt=0, description="How often open console pages refresh their live parts."
    )
