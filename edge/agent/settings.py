"""Agent settings (env prefix ``AUTOGLM_EDGE_``, YAML section ``edge``; fields prefixed ``agent_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.settings import AutoGLMSettings, data_dir
from edge.agent.policy import freshness_table

# how long a cached answer of each route stays fresh (0: never cached) — from the policy table
DEFAULT_FRESHNESS_S: dict[str, float] = freshness_table()


class AgentSettings(AutoGLMSettings):
    yaml_section: ClassVar[str] = "edge"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_EDGE_", extra="ignore", validate_default=True)

    agent_confidence_threshold: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Calibrated route probability below which a request is a hard example "
        "(cloud route-and-call + queued).",
    )
    agent_cloud_url: str = Field(
        default="", description="Cloud controller base URL for tool calls (empty: offline only)."
    )
    agent_cloud_token: str = Field(default="", description="Bearer token for the cloud tool service.")
    agent_cloud_timeout_s: float = Field(
        default=2.0, gt=0, description="Timeout of one cloud tool call attempt."
    )
    agent_cloud_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed cloud call (with jittered backoff)."
    )
    agent_cloud_backoff_s: float = Field(
        default=0.1, ge=0, description="Base backoff between cloud retries (full jitter)."
    )
    agent_cloud_total_budget_s: float = Field(
        default=5.0, gt=0, description="Longest a request may spend on the cloud, all attempts together."
    )
    agent_breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive cloud failures that open the breaker."
    )
    agent_breaker_reset_s: float = Field(
        default=10.0, gt=0, description="Seconds an open breaker waits before a trial call."
    )
    agent_session_ttl_s: float = Field(
        default=1800.0, gt=0, description="Idle time after which a session's short-term state is dropped."
    )
    agent_session_max_turns: int = Field(default=20, ge=1, description="Turns kept per session.")
    agent_cache_threshold: float = Field(
        default=0.90,
        ge=0.0,
        le=1.0,
        description="Cosine similarity for a semantic-cache hit, on top of the signature gate; chosen by "
        "benchmarks/quality_cache.py from its hard-negative curve (docs/arch/agent.md).",
    )
    agent_cache_enabled: bool = Field(
        default=True, description="Answer from the semantic cache when a fresh close match exists."
    )
    agent_memory_threshold: float = Field(
        default=0.75, ge=0.0, le=1.0, description="Cosine similarity for a long-term memory hit."
    )
    agent_memory_answer_threshold: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Cosine similarity at which a long-term knowledge entry answers by itself "
        "(source 'memory').",
    )
    agent_memory_db: Path = Field(
        default_factory=lambda: data_dir() / "edge" / "memory.sqlite3",
        description="SQLite file of the node's long-term memory and semantic cache (synced over MQTT).",
    )
    agent_site: str = Field(
        default="site:suzhou", description="Knowledge-graph site of this node (devices, 'line 3')."
    )
    agent_device_allow: list[str] = Field(
        default_factory=list,
        description="Allowed device commands as 'DEVICE:action' or 'kind:action' "
        "(empty: the per-kind defaults).",
    )
    agent_kg_path: Path | None = Field(
        default=None, description="Knowledge-graph file (None: the shipped plant graph)."
    )
    agent_kg_beam_width: int = Field(
        default=4, ge=1, le=32, description="Beam width of the multi-hop path search."
    )
    agent_kg_scorer: Literal["auto", "lexical", "learned"] = Field(
        default="auto",
        description="Hop scorer of the graph search: the bundle's learned hop_scorer head "
        "('auto': when the bundle carries one), or the lexical cue scorer.",
    )
    agent_kg_prefetch: bool = Field(
        default=False,
        description="With a learned hop scorer: link the question and run the scorer's encoder call on "
        "its masked question in a worker thread while the router encodes (answers unchanged; a question "
        "naming a graph entity that is routed elsewhere wastes that call). Off by default: no gain "
        "measured on 2 cores (benchmarks/bench_ask.py, docs/arch/agent.md).",
    )
    agent_kg_min_hop_prob: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Hop score below which a branch is pruned."
    )
    agent_kg_unsure_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Probability of the best graph path (among all paths found) below which the answer "
        "lists the top candidate paths with their probabilities and asks which one was meant.",
    )
    agent_kg_prior_weight: float = Field(
        default=0.3,
        ge=0.0,
        le=5.0,
        description="Weight of a graph path's feedback prior: weight * (log(1 + confirmed) - "
        "log(1 + rejected)) is added to the scorer's log-probability of the path (counts: this node's "
        "and the fleet's).",
    )
    agent_kg_prior_max: float = Field(
        default=1.0,
        ge=0.0,
        le=5.0,
        description="Bound on a path prior (log space, either sign): feedback reorders only paths the scorer "
        "ranks within a factor exp(2 * this) of each other and never overrides a clear scorer decision.",
    )
    agent_scope: Literal["auto", "off"] = Field(
        default="auto",
        description="Abstention on nonsense / out-of-scope requests with the bundle's scope_head graph "
        "('auto': when the bundle carries one; its calibrated threshold is in scope_head.json).",
    )
    agent_prompt_file: Path | None = Field(
        default=None, description="YAML prompt templates (None: the shipped ones)."
    )
    agent_prompt_max_chars: int = Field(default=2000, ge=200, description="Largest prompt sent to the cloud.")
    agent_cloud_routes: list[str] = Field(
        default_factory=lambda: ["climate", "doc_search"],
        description="Routes whose tools live in the cloud (the others run on the node).",
    )
