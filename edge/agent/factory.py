"""Wiring an :class:`~edge.agent.agent.Agent` from settings (dependency injection: every part
can be replaced by passing it in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.logging import get_logger
from edge.agent.agent import Agent, HardExampleSink
from edge.agent.cloud_client import CircuitBreaker, CloudClient
from edge.agent.heads import HeadsPolicy, HeadsSwapper
from edge.agent.memory import KnowledgeMemory, SemanticCache, SessionStore
from edge.agent.metrics import AgentMetrics
from edge.agent.priors import stored_priors
from edge.agent.prompts import PromptEngine
from edge.agent.routing import Encoder, HashingEncoder, KeywordRouter, ServiceEncoder
from edge.agent.settings import DEFAULT_FRESHNESS_S, AgentSettings
from edge.memory.store import MemoryStore
from skillpack.devices import DeviceStore
from skillpack.kg.graph import KnowledgeGraph
from skillpack.kg.linking import EntityLinker
from skillpack.kg.reasoner import PathReasoner

log = get_logger("autoglm.edge.agent.factory")


def build_agent(
    settings: AgentSettings | None = None,
    *,
    service: Any = None,
    encoder: Encoder | None = None,
    sync: Any = None,
    store: MemoryStore | None = None,
    node_id: str = "edge-local",
    router: KeywordRouter | None = None,
    hard_examples: HardExampleSink | None = None,
    cloud: CloudClient | None = None,
    graph: KnowledgeGraph | None = None,
    bundle_dir: Path | None = None,
    keyword_routing: bool = False,
) -> Agent:
    """``service``: the edge InferenceService (bundle encoder + router head). Without one (or
    an ``encoder``) the agent runs on the hashing encoder with the keyword router. ``sync``: an
    ``EdgeSync`` whose store holds memory + cache and whose outbox takes memory deltas and hard
    examples. ``bundle_dir``: the served bundle, whose ``hop_scorer`` graph (if any) scores the
    graph search's hops (``agent_kg_scorer``) and whose ``scope_head`` gates nonsense
    (``agent_scope``); with a ``service`` that swaps models, the heads follow the served bundle
    (:class:`~edge.agent.heads.HeadsSwapper`). ``keyword_routing``: use the hashing encoder +
    keyword router even with a service (a node with no model to serve; the service still hosts
    the agent's metrics)."""
    s = settings or AgentSettings()
    graph = graph or KnowledgeGraph.load(s.agent_kg_path)
    policy = HeadsPolicy(s.agent_kg_scorer, s.agent_scope == "auto" and not keyword_routing)
    bundle = None
    if bundle_dir is not None and (policy.scorer != "lexical" or policy.scope):
        from contracts.bundle import open_bundle

        bundle = open_bundle(bundle_dir)
    if encoder is None:
        encoder = (
            ServiceEncoder(service)
            if service is not None and not keyword_routing
            else HashingEncoder(KeywordRouter(EntityLinker(graph)))
        )
    if store is None:
        store = getattr(sync, "store", None) or MemoryStore(s.agent_memory_db, node_id)
    publish = sync.publish_memory if sync is not None else None
    metrics = AgentMetrics(node_id, getattr(getattr(service, "metrics", None), "registry", None))
    # path priors persisted in the memory store, shared feedback synced with the fleet over MQTT
    priors = stored_priors(
        store, s, metrics, publish=sync.publish_path_priors if sync is not None else None, sync=sync
    )
    # the bundle's path scorer + scope gate (the lexical scorer / no gate without them)
    heads = policy.load(
        bundle,
        graph,
        PathReasoner(
            graph, beam_width=s.agent_kg_beam_width, min_hop_prob=s.agent_kg_min_hop_prob, priors=priors
        ),
    )
    if hard_examples is None and sync is not None:
        hard_examples = sync.publish_hard_example
    if cloud is None:
        cloud = CloudClient(
            s.agent_cloud_url,
            s.agent_cloud_token,
            timeout_s=s.agent_cloud_timeout_s,
            retries=s.agent_cloud_retries,
            backoff_s=s.agent_cloud_backoff_s,
            total_budget_s=s.agent_cloud_total_budget_s,
            breaker=CircuitBreaker(s.agent_breaker_failures, s.agent_breaker_reset_s),
        )
    agent = Agent(
        s,
        encoder,
        graph=graph,
        devices=DeviceStore.from_graph(graph, s.agent_site or None, allow=set(s.agent_device_allow) or None),
        sessions=SessionStore(s.agent_session_ttl_s, s.agent_session_max_turns),
        memory=KnowledgeMemory(store, publish),
        cache=SemanticCache(store, s.agent_cache_threshold, DEFAULT_FRESHNESS_S, publish),
        cloud=cloud,
        prompts=PromptEngine.load(s.agent_prompt_file, s.agent_prompt_max_chars),
        router=router,
        hard_examples=hard_examples,
        node_id=node_id,
        metrics=metrics,
    )
    agent.heads = heads
    if service is not None and hasattr(service, "on_swap"):
        # a rollout / canary promote / repository load swaps the served bundle: its heads follow
        agent.heads_swapper = HeadsSwapper(agent, policy, graph, metrics)
        service.on_swap(agent.heads_swapper)
    return agent
