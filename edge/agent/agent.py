"""The agent: ``await agent.ask(AskRequest) -> AskResponse``.

Flow (every stage appends a step record; every route rule comes from the policy table,
``edge.agent.policy``):
1. session coreference ("and line 3?" → the last question with the new entity);
2. encode + route with the bundle's router head (calibrated probability; below
   ``agent_confidence_threshold`` the request is a *hard example*); the bundle's scope head
   (when it carries one) makes the router *abstain* on nonsense above its calibrated threshold
   — also a hard example; it reads only embeddings of the model it was built from (another
   model's — a swap whose heads are not built yet, the split's second slot — route as without
   a gate, counted in ``autoglm_edge_agent_scope_skipped_total``);
3. semantic cache (same route and signature, fresh, cosine ≥ threshold) → ``semantic_cache``;
4. long-term memory search (hits with similarity, given to the prompt);
5. confident route → knowledge graph (multi-hop reasoner) / local tool / cloud tool;
   hard example → cloud route-and-call (``cloud_fallback``) and the example is queued over MQTT;
6. cloud down (breaker open, timeouts) → what can be answered locally (a question that links a
   graph entity is answered from the local graph), else an offline answer (``offline``);
7. cache the answer (cacheable routes only), record the turn and the slots.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from contracts.errors import AutoGLMError, BadRequest, Unavailable
from contracts.logging import get_logger
from contracts.loop import HardExampleReason
from edge.agent.cloud_client import CloudClient, result_text
from edge.agent.coref import resolve_followup
from edge.agent.heads import GraphHeads, HeadsSwapper
from edge.agent.memory import KnowledgeMemory, SemanticCache, Session, SessionStore, Turn, question_signature
from edge.agent.metrics import AgentMetrics
from edge.agent.policy import UNKNOWN_ROUTE, Handler, RoutePolicy, policy_table
from edge.agent.prompts import PromptEngine
from edge.agent.routing import Encoded, Encoder, KeywordRouter, mask_codes
from edge.agent.settings import AgentSettings
from edge.agent.tools import LocalTools, ToolOutcome
from edge.agent.types import AskRequest, AskResponse, FeedbackRequest, Source, Steps
from skillpack.devices import DeviceStore
from skillpack.kg.graph import KnowledgeGraph
from skillpack.kg.linking import EntityLinker
from skillpack.kg.reasoner import KGAnswer, PathReasoner
from skillpack.text import has_cjk

log = get_logger("autoglm.edge.agent")
HardExampleSink = Callable[[dict[str, Any]], str]
RECENT_ANSWERS = 2048  # answers remembered for POST /v1/feedback (oldest dropped)


class ScopeGate:
    """What the agent needs of a scope head: P(unsure) and the calibrated threshold."""

    threshold: float

    def p_unsure(self, embedding: Any, text: str) -> float:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class Answer:
    """One answer on its way out: the text, where it came from, the route it answers, the data."""

    text: str
    source: Source
    route: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.data.get("refused")) or "error" in self.data or bool(self.data.get("unsure"))


@dataclass(frozen=True)
class RouteDecision:
    route: str
    confidence: float
    router: str  # "model" | "keyword"
    hard: bool  # below the confidence threshold or abstained: cloud route-and-call + queued
    abstained: bool = False  # the scope head says: nonsense / out of scope
    p_unsure: float | None = None


@dataclass
class _Answered:
    """What feedback needs of a recent answer (``Agent._answered``, keyed by the question's text)."""

    text: str
    resolved_text: str
    route: str  # the router's route
    confidence: float
    final_route: str  # the route that answered
    source: str
    model_version: str
    rejected: set[str] = field(default_factory=set)  # corrections already queued ("" = no route named)


@dataclass
class _Turn:
    """The state of one ``ask`` passed between the stages."""

    req: AskRequest
    text: str
    session: Session | None
    enc: Encoded
    decision: RouteDecision
    steps: Steps
    signature: list[str]
    heads: GraphHeads  # the path scorer + scope gate this question uses throughout
    memory_hits: list[Any] = field(default_factory=list)
    prefetch: Future[bool] | None = None  # the graph search's first hop state, computed meanwhile


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        encoder: Encoder,
        *,
        graph: KnowledgeGraph,
        devices: DeviceStore,
        sessions: SessionStore,
        memory: KnowledgeMemory,
        cache: SemanticCache,
        cloud: CloudClient,
        prompts: PromptEngine,
        reasoner: PathReasoner | None = None,
        router: KeywordRouter | None = None,
        hard_examples: HardExampleSink | None = None,
        node_id: str = "edge-local",
        metrics: AgentMetrics | None = None,
        scope: ScopeGate | None = None,
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self.graph = graph
        self.linker = EntityLinker(graph)
        # path scorer (in the reasoner) + scope gate: one frozen pair, replaced in one assignment
        # when the served bundle changes (edge.agent.heads.HeadsSwapper)
        self.heads = GraphHeads(
            reasoner
            or PathReasoner(
                graph,
                linker=self.linker,
                beam_width=settings.agent_kg_beam_width,
                min_hop_prob=settings.agent_kg_min_hop_prob,
            ),
            scope,
        )
        self.heads_swapper: HeadsSwapper | None = None  # set by the factory for a swapping service
        self.devices = devices
        self.tools = LocalTools(devices)
        self.sessions = sessions
        self.memory = memory
        self.cache = cache
        self.cloud = cloud
        self.prompts = prompts
        self.router = router  # when set, decides the route instead of the bundle's head
        self.keyword = router or KeywordRouter(self.linker)  # the offline fallback's router
        self.hard_examples = hard_examples
        self.node_id = node_id
        self.policies = policy_table(settings.agent_cloud_routes)
        self._paths: OrderedDict[str, tuple[str, tuple[str, ...]]] = (
            OrderedDict()
        )  # question -> (start type, path)
        self.counters: dict[str, int] = {}
        self.metrics = metrics or AgentMetrics(node_id)
        self._answered: OrderedDict[str, _Answered] = OrderedDict()  # question -> answer (feedback)
        self._model_routes: tuple[str, ...] = ()
        self._kg_pool: ThreadPoolExecutor | None = (
            None  # graph prefetch (agent_kg_prefetch)  # the bundle's routes, as the last answer named them
        )

    def policy(self, route: str) -> RoutePolicy:
        return self.policies.get(route, UNKNOWN_ROUTE)

    @property
    def reasoner(self) -> PathReasoner:
        return self.heads.reasoner

    @property
    def scope(self) -> ScopeGate | None:
        scope: ScopeGate | None = self.heads.scope
        return scope

    @scope.setter
    def scope(self, gate: ScopeGate | None) -> None:
        self.heads = replace(self.heads, scope=gate)

    # ------------------------------------------------------------------ public
    async def ask(self, req: AskRequest) -> AskResponse:
        t0 = time.perf_counter()
        steps = Steps(t0)
        session = self.sessions.get(req.session_id) if req.session_id else None
        text = req.text.strip()
        if not text:
            raise BadRequest("text is empty")
        rewrite = resolve_followup(text, session, self.linker)
        if rewrite is not None:
            steps.add(
                "coreference",
                original=text,
                rewritten=rewrite.text,
                replaced=rewrite.replaced,
                by=rewrite.by,
                entity=rewrite.entity,
            )
            text = rewrite.text
        heads = self.heads
        prefetch = self._prefetch_graph(heads.reasoner, text, session)
        enc = (await self.encoder.encode([text], priority=req.priority))[0]
        turn = _Turn(
            req,
            text,
            session,
            enc,
            self._decide(text, enc, steps, heads),
            steps,
            question_signature(text, self.linker),
            heads,
            prefetch=prefetch,
        )
        if prefetch is not None and (
            turn.decision.hard or self.policy(turn.decision.route).handler != Handler.GRAPH
        ):
            prefetch.cancel()  # no confident graph answer ahead: drop it unless it already started
        ans = self._from_cache(turn)
        if ans is None:
            await self._embed_new_knowledge()  # only a memory search needs it
            ans = self._from_memory(turn)
        if ans is None and not turn.decision.hard:
            ans = await self._answer_confident(turn)
        if ans is None:
            ans = await self._answer_from_cloud(turn)
        if turn.decision.hard:
            self._queue_hard_example(turn, ans)
        self._cache_answer(turn, ans)
        self._record_answer(turn, ans)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        steps.add("answer", source=ans.source.value, route=ans.route)
        if req.session_id:
            self._remember_turn(req.session_id, session, text, ans)
        self.counters[ans.source.value] = self.counters.get(ans.source.value, 0) + 1
        cache_step = next((s for s in steps.items if s["kind"] == "cache"), None)
        self.metrics.observe(
            ans.source.value,
            ans.route,
            latency_ms / 1000.0,
            None if cache_step is None else ("hit" if cache_step["hit"] else "miss"),
            self.cloud.breaker.state,
        )
        return AskResponse(
            answer=ans.text,
            route=ans.route,
            confidence=round(turn.decision.confidence, 4),
            source=ans.source,
            steps=steps.items,
            model_version=enc.model_version,
            latency_ms=round(latency_ms, 3),
            session_id=req.session_id,
            data=ans.data,
        )

    async def remember(self, key: str, text: str, *, source: str = "", shared: bool = True) -> dict[str, Any]:
        """A long-term knowledge entry, embedded with the serving encoder, stored and (when
        ``shared``) synced to the fleet."""
        enc = (await self.encoder.encode([text]))[0]
        self.memory.remember(key, text, enc.embedding, source=source or self.node_id, shared=shared)
        return {"key": f"kb:{key}", "model_version": enc.model_version, "shared": shared}

    def feedback(self, req: FeedbackRequest, *, shared: bool = False) -> dict[str, Any]:
        """Feedback on an answer. A graph answer's path prior goes up (correct) or down (wrong); a
        wrong answer also becomes a hard example for the cloud's queue (reason ``user_rejected``,
        with the route the router chose, its confidence and, when given, ``req.route`` as the
        suggested label from the user) — a confidently wrong answer is never queued otherwise.
        ``shared``: given with the edge admin token, so path counts go to the fleet (MQTT path
        priors); anonymous feedback changes only this node's priors. The HTTP route asks for the
        admin token (or insecure dev mode) before a route correction reaches here."""
        if req.route is not None:
            self._check_route(req.route)
        out = self._judge_path(req, shared=shared)
        queued = None if req.correct else self._queue_rejection(req)
        if queued is not None:
            out["hard_example"] = queued
        verdict = "correct" if req.correct else ("wrong_with_route" if req.route else "wrong")
        hard_queued = bool(queued and queued.get("queued"))
        self.metrics.feedback.labels(self.node_id, verdict, str(hard_queued).lower()).inc()
        return out

    def _judge_path(self, req: FeedbackRequest, *, shared: bool) -> dict[str, Any]:
        known = self._paths.get(req.text.strip())
        path = tuple(req.path) if req.path else (known[1] if known else None)
        start_type = req.start_type or (known[0] if known else None)
        if not path or not start_type:
            return {"confirmed": False, "reason": "no graph path known for this question"}
        if req.correct:
            self.reasoner.confirm(start_type, path, shared=shared)
        else:
            self.reasoner.reject(start_type, path, shared=shared)
        return {
            "confirmed": req.correct,
            "shared": shared,
            "start_type": start_type,
            "path": list(path),
            "prior": round(self.reasoner.prior(start_type, path), 4),
        }

    # ------------------------------------------------------------------ stages
    def _decide(self, text: str, enc: Encoded, steps: Steps, heads: GraphHeads) -> RouteDecision:
        route, confidence, router_name = enc.route, enc.confidence, enc.router
        if self.router is not None:
            route, confidence = self.router.route(text)
            router_name = "keyword"
        p_unsure = None
        abstained = False
        scope: ScopeGate | None = None
        skipped: str | None = None
        if enc.router == "model":
            # the gate reads only embeddings of the model its bank was built from; another model's
            # (heads still being built after a swap, a failed rebuild, the split's second slot) is
            # routed as without a gate
            scope, skipped = heads.gate_for(enc.model_version, int(np.shape(enc.embedding)[-1]))
            if skipped is not None:
                self.metrics.scope_skipped.labels(self.node_id, skipped).inc()
        if scope is not None:
            p_unsure = scope.p_unsure(enc.embedding, text)
            abstained = p_unsure >= scope.threshold
            if abstained:
                self.metrics.abstentions.labels(self.node_id).inc()
        hard = abstained or confidence < self.settings.agent_confidence_threshold
        top = sorted(enc.probabilities.items(), key=lambda kv: -kv[1])[:3]
        extra: dict[str, Any] = (
            {}
            if p_unsure is None or scope is None
            else {
                "p_unsure": round(p_unsure, 4),
                "abstain_threshold": scope.threshold,
                "abstained": abstained,
            }
        )
        if skipped is not None:
            extra["scope_skipped"] = {
                "reason": skipped,
                "heads_model": heads.model,
                "model": enc.model_version,
            }
        steps.add(
            "route",
            route=route,
            probability=round(confidence, 4),
            router=router_name,
            threshold=self.settings.agent_confidence_threshold,
            hard_example=hard,
            top=[{"route": r, "p": round(p, 4)} for r, p in top],
            **extra,
        )
        return RouteDecision(route, confidence, router_name, hard, abstained, p_unsure)

    def _from_cache(self, t: _Turn) -> Answer | None:
        route = t.decision.route
        if not self.settings.agent_cache_enabled or not self.policy(route).cacheable or t.decision.abstained:
            return None
        hit, best = self.cache.lookup(t.enc.embedding, None if t.decision.hard else route, t.signature)
        if hit is None:
            t.steps.add("cache", hit=False, best_similarity=round(best, 4), threshold=self.cache.threshold)
            return None
        t.steps.add(
            "cache",
            hit=True,
            similarity=round(hit.similarity, 4),
            age_s=round(hit.age_s, 3),
            origin=hit.origin,
            cached_question=hit.question,
            threshold=self.cache.threshold,
        )
        return Answer(hit.answer, Source.SEMANTIC_CACHE, hit.route, hit.data)

    async def _embed_new_knowledge(self) -> None:
        """Knowledge that arrived without an embedding (the cloud broadcasts text) is embedded with
        the serving encoder before the memory is searched, at most 64 entries per request; a
        failure leaves them for the next request."""
        pending = self.memory.unembedded()
        if not pending:
            return
        try:
            encs = await self.encoder.encode([text for _, _, text in pending])
        except Exception:
            log.warning("embedding %d arrived knowledge entries failed", len(pending), exc_info=True)
            return
        done = self.memory.fill(pending, [e.embedding for e in encs])
        if done:
            self.metrics.knowledge_embedded.labels(self.node_id).inc(done)

    def _from_memory(self, t: _Turn) -> Answer | None:
        t.memory_hits = self.memory.search(
            t.enc.embedding, k=3, threshold=self.settings.agent_memory_threshold
        )
        if not t.memory_hits:
            return None
        t.steps.add(
            "memory",
            hits=[
                {"key": h.key, "similarity": round(h.similarity, 4), "text": h.text[:200]}
                for h in t.memory_hits
            ],
        )
        top = t.memory_hits[0]
        if (
            top.similarity < self.settings.agent_memory_answer_threshold
            or self.policy(t.decision.route).computed
        ):
            return None
        t.steps.add(
            "memory_answer",
            key=top.key,
            similarity=round(top.similarity, 4),
            threshold=self.settings.agent_memory_answer_threshold,
        )
        return Answer(
            top.text,
            Source.MEMORY,
            t.decision.route,
            {"key": top.key, "similarity": round(top.similarity, 4), "origin": top.source},
        )

    async def _answer_confident(self, t: _Turn) -> Answer | None:
        route = t.decision.route
        handler = self.policy(route).handler
        if handler == Handler.GRAPH:
            await self._prefetched(t)
            return self._graph_answer(t.text, t.session, t.steps, route, t.heads.reasoner)
        if handler in (Handler.LOCAL_TOOL, Handler.MEMORY) and self.tools.handles(route):
            return self._tool_answer(route, t, keep_errors=self.policy(route).errors_answer)
        return None  # a cloud route: handled by _answer_from_cloud

    def _prefetch_graph(
        self, reasoner: PathReasoner, text: str, session: Session | None
    ) -> Future[bool] | None:
        """With a learned scorer (``agent_kg_prefetch``): ``reasoner.prefetch`` in the agent's one
        worker thread — linking and the scorer's encoder call on the masked question run while the
        router encodes (ONNX Runtime releases the GIL), and the search later finds them cached."""
        if not self.settings.agent_kg_prefetch or not hasattr(reasoner.scorer, "prefetch"):
            return None
        if self._kg_pool is None:
            self._kg_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kg-prefetch")
        return self._kg_pool.submit(reasoner.prefetch, text, self._site(session))

    @staticmethod
    async def _prefetched(t: _Turn) -> None:
        """Wait for this question's prefetch; one still queued behind another question's is
        cancelled (the search computes the same values itself)."""
        fut = t.prefetch
        if fut is None or fut.cancel():
            return
        try:
            await asyncio.wrap_future(fut)
        except Exception as exc:  # the search raises what matters (e.g. nothing links)
            log.debug("graph prefetch failed: %s", exc)

    def _graph_answer(
        self, text: str, session: Session | None, steps: Steps, route: str, reasoner: PathReasoner
    ) -> Answer | None:
        try:
            ans = reasoner.answer(text, context_site=self._site(session))
        except AutoGLMError as exc:
            steps.add("kg", error=exc.message)
            return None
        self._kg_steps(ans, steps, reasoner)
        self.metrics.kg_paths.labels(self.node_id, "hit" if ans.from_cache else "miss").inc()
        if ans.path_probability < self.settings.agent_kg_unsure_threshold:
            self.metrics.kg_unsure.labels(self.node_id).inc()
            return self._unsure_graph_answer(ans, steps, route)
        return Answer(ans.text, Source.KNOWLEDGE_GRAPH, route, ans.to_dict())

    def _unsure_graph_answer(self, ans: KGAnswer, steps: Steps, route: str) -> Answer:
        """The scorer is unsure: show the top candidate paths with their probabilities and ask."""
        zh = has_cjk(ans.question)
        options = ans.candidate_paths(3)
        steps.add(
            "kg_unsure",
            path_probability=round(ans.path_probability, 4),
            threshold=self.settings.agent_kg_unsure_threshold,
            candidates=options,
        )
        lines = [f"{i}. {o['text']} (p={o['p']:.2f})" for i, o in enumerate(options, start=1)]
        head = "我不确定你问的是哪一个，可能是：" if zh else "I am not sure which one you mean. Candidates:"
        tail = "请告诉我是哪一个。" if zh else "Which one did you mean?"
        return Answer(
            "\n".join([head, *lines, tail]),
            Source.KNOWLEDGE_GRAPH,
            route,
            {**ans.to_dict(), "unsure": True, "candidates": options},
        )

    def _tool_answer(self, route: str, t: _Turn, keep_errors: bool) -> Answer | None:
        # equipment codes are names, not quantities: the arithmetic and unit tools never read them
        text = mask_codes(t.text, self.linker) if route in ("calculator", "unit_convert") else t.text
        try:
            out = self.tools.run(
                route, text, t.session, confirm=t.req.confirm and self.policy(route).needs_confirmation
            )
        except AutoGLMError as exc:
            t.steps.add("tool_call", tool=route, where="edge", error=exc.message, status=exc.status)
            return (
                Answer(exc.message, Source.LOCAL_TOOL, route, {"error": exc.message}) if keep_errors else None
            )
        self._tool_step(out, t.steps)
        return Answer(out.answer, Source.LOCAL_TOOL, route, out.data)

    async def _answer_from_cloud(self, t: _Turn) -> Answer:
        route, hard, steps = t.decision.route, t.decision.hard, t.steps
        zh = has_cjk(t.text)
        prompt = self.prompts.build(
            route,
            t.text,
            confidence=t.enc.confidence,
            node=self.node_id,
            language="Chinese" if zh else "English",
            memory=[h.text for h in t.memory_hits],
            history=[f"Q: {x.question} A: {x.answer}" for x in (t.session.turns if t.session else [])][-3:],
            steps=[s for s in steps.items if s["kind"] != "route"],
            followup=any(s["kind"] == "coreference" for s in steps.items),
        )
        steps.add("prompt", template=prompt.template, chars=len(prompt.text), truncated=prompt.truncated)
        hint = None if hard else route
        source = Source.CLOUD_FALLBACK if hard else Source.CLOUD_TOOL
        t_call = time.perf_counter()
        try:
            res = await self.cloud.route_and_call(t.text, hint, context=prompt.text)
        except AutoGLMError as exc:
            steps.add(
                "cloud_call",
                route_hint=hint,
                breaker=self.cloud.breaker.state,
                error=exc.message,
                status=exc.status,
                attempts=getattr(exc, "attempts", []),
                ms=round((time.perf_counter() - t_call) * 1000, 3),
            )
            if isinstance(exc, Unavailable) or exc.status >= 500:
                return self._offline(t, zh)
            msg = f"云端无法回答：{exc.message}" if zh else f"The cloud could not answer: {exc.message}"
            return Answer(msg, source, route, {"error": exc.message})
        steps.add(
            "cloud_call",
            route_hint=hint,
            tool=res.tool,
            route=res.route,
            attempts=res.attempts,
            breaker=self.cloud.breaker.state,
            ms=round((time.perf_counter() - t_call) * 1000, 3),
        )
        data = res.result if isinstance(res.result, dict) else {"result": res.result}
        return Answer(result_text(res.result), source, res.route or res.tool or route, data)

    def _offline(self, t: _Turn, zh: bool) -> Answer:
        """Cloud unreachable: answer locally what the node can — a question that names a graph
        entity from the local graph, a local tool's question with that tool — else say so."""
        guess, _ = KeywordRouter(self.linker).route(t.text)
        if not t.decision.abstained:
            tries: list[str] = [guess] if self.policy(guess).local and guess != "chitchat" else []
            if "kg_query" not in tries and self._links_entity(t.text, t.session):
                tries.append("kg_query")
            for route in tries:
                if self.policy(route).handler == Handler.GRAPH:
                    ans = self._graph_answer(t.text, t.session, t.steps, route, t.heads.reasoner)
                elif self.tools.handles(route):
                    ans = self._tool_answer(route, t, keep_errors=False)
                else:
                    ans = None
                if ans is not None:
                    t.steps.add("degraded", reason="cloud unreachable; answered on the edge", route=route)
                    return ans
        t.steps.add(
            "degraded",
            reason="cloud unreachable",
            breaker=self.cloud.breaker.state,
            abstained=t.decision.abstained,
        )
        if t.decision.abstained:
            msg = (
                "我不确定你的意思，也无法连接云端。可以换个说法吗？我能计算、换算单位、查询设备和工厂知识图谱。"
                if zh
                else "I am not sure what you mean, and the cloud is out of reach. Could you rephrase? "
                "I can calculate, "
                "convert units, report device status and answer plant knowledge-graph questions."
            )
            return Answer(msg, Source.OFFLINE, t.decision.route, {"offline": True, "unsure": True})
        msg = (
            "云端暂时无法连接，这个问题需要云端工具，请稍后再试。本地仍可计算、换算单位、查询设备和工厂知识图谱。"
            if zh
            else "I am offline from the cloud right now and cannot answer this here. "
            "Locally I can still calculate, "
            "convert units, report device status and answer plant knowledge-graph questions."
        )
        return Answer(msg, Source.OFFLINE, t.decision.route, {"offline": True})

    def _links_entity(self, text: str, session: Session | None) -> bool:
        return any(m.score >= 0.5 for m in self.linker.link(text, context_site=self._site(session)))

    def _cache_answer(self, t: _Turn, ans: Answer) -> None:
        if ans.source not in (
            Source.LOCAL_TOOL,
            Source.KNOWLEDGE_GRAPH,
            Source.CLOUD_TOOL,
            Source.CLOUD_FALLBACK,
        ):
            return
        if ans.failed or not self.policy(ans.route).cacheable:
            return
        key = self.cache.store_answer(
            t.text, t.enc.embedding, ans.route, t.signature, ans.text, ans.data, source=self.node_id
        )
        if key:
            t.steps.add("cache_store", key=key, route=ans.route)

    # ------------------------------------------------------------------ records
    def _kg_steps(self, ans: KGAnswer, steps: Steps, reasoner: PathReasoner) -> None:
        ent = self.graph.entities[ans.start.entity_id]
        steps.add(
            "kg_link",
            entity=ent.id,
            type=ent.type,
            surface=ans.start.surface,
            method=ans.start.method,
            score=round(ans.start.score, 4),
        )
        for s in ans.steps:
            top = sorted(s.candidates.items(), key=lambda kv: -kv[1])[:3]
            steps.add(
                "kg_hop",
                hop=s.hop,
                relation=s.relation,
                score=round(s.score, 4),
                **{"from": list(s.from_entities)},
                to=list(s.to_entities),
                candidates=[{"relation": r, "score": round(p, 4)} for r, p in top],
            )
        steps.add(
            "kg_answer",
            answers=ans.answers,
            path=list(ans.path),
            score=round(ans.score, 4),
            from_path_cache=ans.from_cache,
            scorer=type(reasoner.scorer).__name__,
        )
        key = ans.question.strip()
        self._paths[key] = (ent.type, ans.path)
        self._paths.move_to_end(key)
        while len(self._paths) > 2048:
            self._paths.popitem(last=False)

    @staticmethod
    def _tool_step(out: ToolOutcome, steps: Steps) -> None:
        steps.add(
            "tool_call",
            tool=out.tool,
            where="edge",
            args=out.args,
            result=out.data if len(str(out.data)) < 1500 else str(out.data)[:1500],
            refused=out.refused,
        )

    # ------------------------------------------------------------------ feedback → hard examples
    def _record_answer(self, t: _Turn, ans: Answer) -> None:
        """Remember the answer for feedback on it (bounded LRU by question text)."""
        if t.enc.probabilities:
            self._model_routes = tuple(t.enc.probabilities)
        rec = _Answered(
            t.req.text.strip(),
            t.text,
            t.decision.route,
            round(t.decision.confidence, 6),
            ans.route,
            ans.source.value,
            t.enc.model_version,
        )
        for key in {rec.text, rec.resolved_text}:
            self._answered[key] = rec
            self._answered.move_to_end(key)
        while len(self._answered) > RECENT_ANSWERS:
            self._answered.popitem(last=False)

    def _check_route(self, route: str) -> None:
        known = set(self._model_routes) | set(self.policies)
        if route not in known:
            raise BadRequest(
                f"unknown route {route!r}: this node knows {', '.join(sorted(known))} "
                "(the bundle's routes and the agent's policy table)"
            )

    def _queue_rejection(self, req: FeedbackRequest) -> dict[str, Any]:
        """A rejected answer as a hard example (once per question and named route while the answer
        is remembered); a question this node has not answered recently is still queued when the user
        names its route (the cloud embeds and triages it)."""
        text = req.text.strip()
        rec = self._answered.get(text)
        if rec is None and req.route is None:
            return {"queued": False, "reason": "no recent answer to this question and no route named"}
        if rec is None:
            rec = _Answered(text, text, "", 0.0, "", "", "")
            self._answered[text] = rec
            while len(self._answered) > RECENT_ANSWERS:
                self._answered.popitem(last=False)
        correction = req.route or ""
        if correction in rec.rejected:
            return {"queued": False, "reason": "this rejection was already queued"}
        example: dict[str, Any] = {
            "text": rec.text,
            "resolved_text": rec.resolved_text,
            "edge_route": rec.route,
            "edge_confidence": rec.confidence,
            "model_version": rec.model_version,
            "final_route": rec.final_route,
            "answer_source": rec.source,
            "reason": HardExampleReason.USER_REJECTED.value,
            "user_route": correction,
            "ts": time.time(),
        }
        queued, detail = self._send_hard_example(example)
        if queued:
            rec.rejected.add(correction)
            return {"queued": True, "id": detail, "route": rec.route, "confidence": rec.confidence}
        return {"queued": False, "reason": detail}

    def _send_hard_example(self, example: dict[str, Any]) -> tuple[bool, str]:
        """Hand one hard example to the sync outbox: (queued, its id or why not)."""
        if self.hard_examples is None:
            return False, "no sync configured"
        try:
            return True, self.hard_examples(example)
        except AutoGLMError as exc:  # outbox over budget: say so, never drop silently
            log.error("hard example not queued: %s", exc.message)
            return False, exc.message

    def _queue_hard_example(self, t: _Turn, ans: Answer) -> None:
        d = t.decision
        example = {
            "text": t.req.text,
            "resolved_text": t.text,
            "edge_route": d.route,
            "edge_confidence": round(d.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in t.enc.probabilities.items()},
            "model_version": t.enc.model_version,
            "final_route": ans.route,
            "answer": ans.text[:2000],
            "answer_source": ans.source.value,
            "abstained": d.abstained,
            "p_unsure": None if d.p_unsure is None else round(d.p_unsure, 6),
            "reason": HardExampleReason.ABSTAINED if d.abstained else HardExampleReason.LOW_CONFIDENCE,
            "ts": time.time(),
        }
        queued, detail = self._send_hard_example(example)
        if queued:
            t.steps.add("hard_example", queued=True, id=detail)
        elif self.hard_examples is None:
            t.steps.add("hard_example", queued=False, reason=detail)
        else:
            t.steps.add("hard_example", queued=False, error=detail)
        self.metrics.hard_examples.labels(self.node_id, str(queued).lower()).inc()

    def _remember_turn(self, session_id: str, session: Session | None, text: str, ans: Answer) -> None:
        route, data = ans.route, ans.data
        slots: dict[str, Any] = {"last_question": text, "last_route": route}
        mentions = [m for m in self.linker.link(text, context_site=self._site(session)) if m.score >= 0.99]
        if mentions:
            m = mentions[0]
            slots["last_mention"] = m.surface
            slots["last_entity"] = m.entity_id
            site = (
                self.linker.site_of(m.entity_id)
                if self.graph.entities[m.entity_id].type != "site"
                else m.entity_id
            )
            slots["site"] = site
        if isinstance(data.get("device"), str) or route.startswith("device"):
            slots["last_device"] = data.get("id") or data.get("device")
        self.sessions.record(session_id, Turn(text, ans.text, route, ans.source.value, time.time()), **slots)

    def _site(self, session: Session | None) -> str | None:
        if session is not None and session.slots.get("site"):
            return str(session.slots["site"])
        return self.settings.agent_site or None
