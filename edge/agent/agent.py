"""The agent: ``await agent.ask(AskRequest) -> AskResponse``.

Flow (every stage appends a step record):
1. session coreference ("and line 3?" → the last question with the new entity);
2. encode + route with the bundle's router head (calibrated probability; below
   ``agent_confidence_threshold`` the request is a *hard example*);
3. semantic cache (same route and signature, fresh, cosine ≥ threshold) → ``semantic_cache``;
4. long-term memory search (hits with similarity, given to the prompt);
5. confident route → knowledge graph (multi-hop reasoner) / local tool / cloud tool;
   hard example → cloud route-and-call (``cloud_fallback``) and the example is queued over MQTT;
6. cloud down (breaker open, timeouts) → what can be answered locally, else an offline answer
   (``offline``) — at once when the breaker is open;
7. cache the answer (never device_control), record the turn and the slots.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from contracts.errors import AutoGLMError, BadRequest, Unavailable
from contracts.logging import get_logger
from edge.agent.cloud_client import CloudClient, result_text
from edge.agent.coref import resolve_followup
from edge.agent.memory import KnowledgeMemory, SemanticCache, Session, SessionStore, Turn, question_signature
from edge.agent.metrics import AgentMetrics
from edge.agent.prompts import PromptEngine
from edge.agent.routing import Encoded, Encoder, KeywordRouter
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
# routes whose answer must be computed (a remembered text never answers them)
COMPUTED_ROUTES = frozenset({"calculator", "unit_convert", "device_status", "device_control", "memory_recall"})


class Agent:
    def __init__(self, settings: AgentSettings, encoder: Encoder, *, graph: KnowledgeGraph, devices: DeviceStore,
                 sessions: SessionStore, memory: KnowledgeMemory, cache: SemanticCache, cloud: CloudClient,
                 prompts: PromptEngine, reasoner: PathReasoner | None = None, router: KeywordRouter | None = None,
                 hard_examples: HardExampleSink | None = None, node_id: str = "edge-local",
                 metrics: AgentMetrics | None = None) -> None:
        self.settings = settings
        self.encoder = encoder
        self.graph = graph
        self.linker = EntityLinker(graph)
        self.reasoner = reasoner or PathReasoner(graph, linker=self.linker, beam_width=settings.agent_kg_beam_width,
                                                 min_hop_prob=settings.agent_kg_min_hop_prob)
        self.devices = devices
        self.tools = LocalTools(devices)
        self.sessions = sessions
        self.memory = memory
        self.cache = cache
        self.cloud = cloud
        self.prompts = prompts
        self.router = router  # when set, decides the route instead of the bundle's head
        self.hard_examples = hard_examples
        self.node_id = node_id
        self._paths: OrderedDict[str, tuple[str, tuple[str, ...]]] = OrderedDict()  # question -> (start type, path)
        self.counters: dict[str, int] = {}
        self.metrics = metrics or AgentMetrics(node_id)

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
            steps.add("coreference", original=text, rewritten=rewrite.text, replaced=rewrite.replaced, by=rewrite.by,
                      entity=rewrite.entity)
            text = rewrite.text
        enc = (await self.encoder.encode([text], priority=req.priority))[0]
        route, confidence, router_name = enc.route, enc.confidence, enc.router
        if self.router is not None:
            route, confidence = self.router.route(text)
            router_name = "keyword"
        hard = confidence < self.settings.agent_confidence_threshold
        top = sorted(enc.probabilities.items(), key=lambda kv: -kv[1])[:3]
        steps.add("route", route=route, probability=round(confidence, 4), router=router_name,
                  threshold=self.settings.agent_confidence_threshold, hard_example=hard,
                  top=[{"route": r, "p": round(p, 4)} for r, p in top])

        signature = question_signature(text, self.linker)
        answer: str | None = None
        source: Source | None = None
        data: dict[str, Any] = {}
        final_route = route
        if self.settings.agent_cache_enabled and route not in ("device_control", "memory_recall"):
            hit, best = self.cache.lookup(enc.embedding, None if hard else route, signature)
            if hit is not None:
                steps.add("cache", hit=True, similarity=round(hit.similarity, 4), age_s=round(hit.age_s, 3),
                          origin=hit.origin, cached_question=hit.question, threshold=self.cache.threshold)
                answer, source, data, final_route = hit.answer, Source.SEMANTIC_CACHE, hit.data, hit.route
            else:
                steps.add("cache", hit=False, best_similarity=round(best, 4), threshold=self.cache.threshold)
        memory_hits = []
        if answer is None:
            memory_hits = self.memory.search(enc.embedding, k=3, threshold=self.settings.agent_memory_threshold)
            if memory_hits:
                steps.add("memory", hits=[{"key": h.key, "similarity": round(h.similarity, 4), "text": h.text[:200]}
                                          for h in memory_hits])
        if (answer is None and memory_hits and memory_hits[0].similarity >= self.settings.agent_memory_answer_threshold
                and route not in COMPUTED_ROUTES):
            top_hit = memory_hits[0]
            answer, source = top_hit.text, Source.MEMORY
            data = {"key": top_hit.key, "similarity": round(top_hit.similarity, 4), "origin": top_hit.source}
            steps.add("memory_answer", key=top_hit.key, similarity=round(top_hit.similarity, 4),
                      threshold=self.settings.agent_memory_answer_threshold)
        if answer is None and not hard:
            answer, source, data = await self._answer_confident(route, text, session, req, enc, steps, memory_hits)
        if answer is None:
            answer, source, data, final_route = await self._answer_from_cloud(
                route, text, session, req, enc, steps, memory_hits, hard)
        assert source is not None
        if hard:
            self._queue_hard_example(req.text, text, enc, route, confidence, final_route, answer, source, steps)
        if source in (Source.LOCAL_TOOL, Source.KNOWLEDGE_GRAPH, Source.CLOUD_TOOL, Source.CLOUD_FALLBACK) \
                and final_route not in ("device_control",) and not data.get("refused") and "error" not in data:
            key = self.cache.store_answer(text, enc.embedding, final_route, signature, answer, data, source=self.node_id)
            if key:
                steps.add("cache_store", key=key, route=final_route)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        steps.add("answer", source=source.value, route=final_route)
        if req.session_id:
            self._remember_turn(req.session_id, session, text, answer, final_route, source, data)
        self.counters[source.value] = self.counters.get(source.value, 0) + 1
        cache_step = next((s for s in steps.items if s["kind"] == "cache"), None)
        self.metrics.observe(source.value, final_route, latency_ms / 1000.0,
                             None if cache_step is None else ("hit" if cache_step["hit"] else "miss"),
                             self.cloud.breaker.state)
        return AskResponse(answer=answer, route=final_route, confidence=round(confidence, 4), source=source,
                           steps=steps.items, model_version=enc.model_version, latency_ms=round(latency_ms, 3),
                           session_id=req.session_id, data=data)

    async def remember(self, key: str, text: str, *, source: str = "") -> dict[str, Any]:
        """A long-term knowledge entry, embedded with the serving encoder, stored and synced."""
        enc = (await self.encoder.encode([text]))[0]
        self.memory.remember(key, text, enc.embedding, source=source or self.node_id)
        return {"key": f"kb:{key}", "model_version": enc.model_version}

    def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        known = self._paths.get(req.text.strip())
        path = tuple(req.path) if req.path else (known[1] if known else None)
        start_type = req.start_type or (known[0] if known else None)
        if not path or not start_type:
            return {"confirmed": False, "reason": "no graph path known for this question"}
        if req.correct:
            self.reasoner.confirm(start_type, path)
        return {"confirmed": req.correct, "start_type": start_type, "path": list(path),
                "prior": round(self.reasoner.prior(start_type, path), 4)}

    # ------------------------------------------------------------------ stages
    async def _answer_confident(self, route: str, text: str, session: Session | None, req: AskRequest, enc: Encoded,
                                steps: Steps, memory_hits: list[Any]) -> tuple[str | None, Source | None, dict[str, Any]]:
        if route == "kg_query":
            try:
                ans = self.reasoner.answer(text, context_site=self._site(session))
            except AutoGLMError as exc:
                steps.add("kg", error=exc.message)
                return None, None, {}
            self._kg_steps(ans, steps)
            return ans.text, Source.KNOWLEDGE_GRAPH, ans.to_dict()
        if self.tools.handles(route) and route not in self.settings.agent_cloud_routes:
            try:
                out = self.tools.run(route, text, session, confirm=req.confirm)
            except AutoGLMError as exc:
                steps.add("tool_call", tool=route, where="edge", error=exc.message, status=exc.status)
                if route in ("device_status", "device_control"):
                    return (f"{exc.message}", Source.LOCAL_TOOL, {"error": exc.message})
                return None, None, {}
            self._tool_step(out, steps)
            return out.answer, Source.LOCAL_TOOL, out.data
        return None, None, {}  # a cloud route: handled by _answer_from_cloud

    async def _answer_from_cloud(self, route: str, text: str, session: Session | None, req: AskRequest, enc: Encoded,
                                 steps: Steps, memory_hits: list[Any], hard: bool
                                 ) -> tuple[str, Source, dict[str, Any], str]:
        zh = has_cjk(text)
        prompt = self.prompts.build(route, text, confidence=enc.confidence, node=self.node_id,
                                    language="Chinese" if zh else "English",
                                    memory=[h.text for h in memory_hits],
                                    history=[f"Q: {t.question} A: {t.answer}" for t in (session.turns if session else [])][-3:],
                                    steps=[s for s in steps.items if s["kind"] != "route"],
                                    followup=any(s["kind"] == "coreference" for s in steps.items))
        steps.add("prompt", template=prompt.template, chars=len(prompt.text), truncated=prompt.truncated)
        hint = None if hard else route
        t_call = time.perf_counter()
        try:
            res = await self.cloud.route_and_call(text, hint, context=prompt.text)
        except AutoGLMError as exc:
            steps.add("cloud_call", route_hint=hint, breaker=self.cloud.breaker.state, error=exc.message,
                      status=exc.status, attempts=getattr(exc, "attempts", []),
                      ms=round((time.perf_counter() - t_call) * 1000, 3))
            if isinstance(exc, Unavailable) or exc.status >= 500:
                return self._offline(route, text, session, req, steps, zh)
            msg = f"云端无法回答：{exc.message}" if zh else f"The cloud could not answer: {exc.message}"
            return msg, Source.CLOUD_FALLBACK if hard else Source.CLOUD_TOOL, {"error": exc.message}, route
        steps.add("cloud_call", route_hint=hint, tool=res.tool, route=res.route, attempts=res.attempts,
                  breaker=self.cloud.breaker.state, ms=round((time.perf_counter() - t_call) * 1000, 3))
        data = res.result if isinstance(res.result, dict) else {"result": res.result}
        return (result_text(res.result), Source.CLOUD_FALLBACK if hard else Source.CLOUD_TOOL, data,
                res.route or res.tool or route)

    def _offline(self, route: str, text: str, session: Session | None, req: AskRequest, steps: Steps, zh: bool
                 ) -> tuple[str, Source, dict[str, Any], str]:
        """Cloud unreachable: answer locally what the node can, else say it is offline."""
        guess, _ = KeywordRouter(self.linker).route(text)
        if guess == "kg_query":
            try:
                ans = self.reasoner.answer(text, context_site=self._site(session))
                self._kg_steps(ans, steps)
                steps.add("degraded", reason="cloud unreachable; answered on the edge", route=guess)
                return ans.text, Source.KNOWLEDGE_GRAPH, ans.to_dict(), guess
            except AutoGLMError:
                pass
        if self.tools.handles(guess) and guess != "chitchat":
            try:
                out = self.tools.run(guess, text, session, confirm=req.confirm)
                self._tool_step(out, steps)
                steps.add("degraded", reason="cloud unreachable; answered on the edge", route=guess)
                return out.answer, Source.LOCAL_TOOL, out.data, guess
            except AutoGLMError:
                pass
        steps.add("degraded", reason="cloud unreachable", breaker=self.cloud.breaker.state)
        msg = ("云端暂时无法连接，这个问题需要云端工具，请稍后再试。本地仍可计算、换算单位、查询设备和工厂知识图谱。" if zh else
               "I am offline from the cloud right now and cannot answer this here. Locally I can still calculate, "
               "convert units, report device status and answer plant knowledge-graph questions.")
        return msg, Source.OFFLINE, {"offline": True}, route

    # ------------------------------------------------------------------ records
    def _kg_steps(self, ans: KGAnswer, steps: Steps) -> None:
        ent = self.graph.entities[ans.start.entity_id]
        steps.add("kg_link", entity=ent.id, type=ent.type, surface=ans.start.surface, method=ans.start.method,
                  score=round(ans.start.score, 4))
        for s in ans.steps:
            top = sorted(s.candidates.items(), key=lambda kv: -kv[1])[:3]
            steps.add("kg_hop", hop=s.hop, relation=s.relation, score=round(s.score, 4), **{"from": list(s.from_entities)},
                      to=list(s.to_entities), candidates=[{"relation": r, "score": round(p, 4)} for r, p in top])
        steps.add("kg_answer", answers=ans.answers, path=list(ans.path), score=round(ans.score, 4), from_path_cache=ans.from_cache,
                  scorer=type(self.reasoner.scorer).__name__)
        key = ans.question.strip()
        self._paths[key] = (ent.type, ans.path)
        self._paths.move_to_end(key)
        while len(self._paths) > 2048:
            self._paths.popitem(last=False)

    @staticmethod
    def _tool_step(out: ToolOutcome, steps: Steps) -> None:
        steps.add("tool_call", tool=out.tool, where="edge", args=out.args,
                  result=out.data if len(str(out.data)) < 1500 else str(out.data)[:1500], refused=out.refused)

    def _queue_hard_example(self, original: str, text: str, enc: Encoded, route: str, confidence: float,
                            final_route: str, answer: str, source: Source, steps: Steps) -> None:
        example = {"text": original, "resolved_text": text, "edge_route": route, "edge_confidence": round(confidence, 6),
                   "probabilities": {k: round(v, 6) for k, v in enc.probabilities.items()},
                   "model_version": enc.model_version, "final_route": final_route, "answer": answer[:2000],
                   "answer_source": source.value, "ts": time.time()}
        if self.hard_examples is None:
            steps.add("hard_example", queued=False, reason="no sync configured")
            self.metrics.hard_examples.labels(self.node_id, "false").inc()
            return
        try:
            example_id = self.hard_examples(example)
        except AutoGLMError as exc:  # outbox over budget: say so, never drop silently
            steps.add("hard_example", queued=False, error=exc.message)
            self.metrics.hard_examples.labels(self.node_id, "false").inc()
            log.error("hard example not queued: %s", exc.message)
            return
        steps.add("hard_example", queued=True, id=example_id)
        self.metrics.hard_examples.labels(self.node_id, "true").inc()

    def _remember_turn(self, session_id: str, session: Session | None, text: str, answer: str, route: str,
                       source: Source, data: dict[str, Any]) -> None:
        slots: dict[str, Any] = {"last_question": text, "last_route": route}
        mentions = [m for m in self.linker.link(text, context_site=self._site(session)) if m.score >= 0.99]
        if mentions:
            m = mentions[0]
            slots["last_mention"] = m.surface
            slots["last_entity"] = m.entity_id
            site = self.linker.site_of(m.entity_id) if self.graph.entities[m.entity_id].type != "site" else m.entity_id
            slots["site"] = site
        if isinstance(data.get("device"), str) or route.startswith("device"):
            slots["last_device"] = data.get("id") or data.get("device")
        self.sessions.record(session_id, Turn(text, answer, route, source.value, time.time()), **slots)

    def _site(self, session: Session | None) -> str | None:
        if session is not None and session.slots.get("site"):
            return str(session.slots["site"])
        return self.settings.agent_site or None
