"""The agent's graph heads — the path scorer of the graph search and the scope gate — and
their swap when the node serves another bundle.

:class:`GraphHeads` is one frozen pair: the :class:`PathReasoner` that scores hops with the
bundle's ``hop_scorer`` graph (or the lexical cue scorer) and the ``scope_head`` gate (or none),
with where they came from and a digest of their graph files. The agent holds one and replaces it
in one assignment; a question takes the pair once at its start, so a question in flight keeps
one consistent pair.

:class:`HeadsSwapper` is a ``ModelManager.on_swap`` listener: on a swap it rebuilds the heads of
the newly served bundle in a worker thread (an adapter-only update is opened with the parent the
loader used, its embeddings with the served adapter set) and installs them on the event loop. A
bundle without heads (or with heads the bundle cannot use, as at start) gives the lexical scorer
and no gate; a rebuild that fails keeps the heads in use. Only the newest swap's heads are
installed.

The scope gate reads only embeddings of the model its bank was built from
(:meth:`GraphHeads.gate_for`, by the ``name:version/adapter_set`` label the inference result
carries): while a swap's heads are being built, after a failed rebuild, and for the traffic
split's second slot the agent routes as without a gate and counts the skip.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.bundle import Bundle, open_bundle
from contracts.errors import BundleError
from contracts.logging import get_logger
from edge.agent.routing import KeywordRouter
from skillpack.kg.graph import KnowledgeGraph
from skillpack.kg.linking import EntityLinker
from skillpack.kg.reasoner import LexicalHopScorer, PathReasoner

if TYPE_CHECKING:
    from edge.agent.metrics import AgentMetrics
    from edge.serving.loaded_model import LoadedModel

log = get_logger("autoglm.edge.agent.heads")

HEAD_ROLES = ("hop_scorer", "scope_head")
SKIP_MODEL_MISMATCH = "model_mismatch"  # the embedding came from another model than the gate's
SKIP_WIDTH_MISMATCH = "width_mismatch"  # the embedding has another width than the gate reads


@dataclass(frozen=True)
class GraphHeads:
    """The path scorer (inside ``reasoner``) and the scope gate in use, and their origin."""

    reasoner: PathReasoner
    scope: Any = None  # edge.agent.agent.ScopeGate | None
    digest: str = ""  # sha256 over the heads' graph files (shortened); "" without learned heads
    model: str | None = None  # name:version/adapter_set of the served bundle they came from
    source: str | None = None  # that bundle's directory
    adapter_set: str | None = None

    @property
    def scorer_kind(self) -> str:
        return "lexical" if isinstance(self.reasoner.scorer, LexicalHopScorer) else "learned"

    def gate_for(self, model: str, width: int) -> tuple[Any, str | None]:
        """The scope gate to apply to an embedding of ``width`` computed by ``model``
        (``name:version/adapter_set``), or None and why not: the gate reads only embeddings of the
        model its bank was built from (``model_mismatch``: a swap whose heads are being built or
        failed to build, the traffic split's second slot) and of its width (``width_mismatch``).
        Heads of unknown origin (``model`` None: a gate passed in by hand) are not checked by model."""
        if self.scope is None:
            return None, None
        if not self.built_from(model):
            return None, SKIP_MODEL_MISMATCH
        want = getattr(self.scope, "embed_dim", None)
        if want is not None and int(want) != width:
            return None, SKIP_WIDTH_MISMATCH
        return self.scope, None

    def built_from(self, model: str | None) -> bool:
        """Whether these heads were built from ``model`` (a ``name:version/adapter_set`` label);
        heads of unknown origin, or an unknown model, are not told apart."""
        return self.model is None or model is None or model == self.model

    def status(self) -> dict[str, Any]:
        """For ``GET /v1/agent/status``."""
        return {
            "scorer": self.scorer_kind,
            "scorer_class": type(self.reasoner.scorer).__name__,
            "scope_head": self.scope is not None,
            "digest": self.digest,
            "model": self.model,  # which bundle (not its path: the status is open)
            "adapter_set": self.adapter_set,
        }


def heads_digest(bundle: Bundle, roles: list[str]) -> str:
    """sha256 over the graph files of ``roles`` (their manifest sha256, which ``open_bundle``
    checked against the files), first 16 hex digits; "" for none."""
    if not roles:
        return ""
    h = hashlib.sha256()
    for role in sorted(roles):
        h.update(f"{role}:{bundle.graph(role).sha256}\n".encode())
    return h.hexdigest()[:16]


def learned_scorer(bundle: Bundle | None, required: bool, adapter_set: str | None = None) -> Any:
    """The bundle's ``hop_scorer`` (None: the lexical scorer). A head the bundle cannot use
    (e.g. an adapter-only update that lists the parent's graph but not its metadata) is a
    warning and None, unless ``required`` (``agent_kg_scorer=learned``)."""
    if bundle is None:
        if required:
            raise BundleError("agent_kg_scorer=learned needs a bundle with a hop_scorer graph")
        return None
    if "hop_scorer" not in bundle.manifest.graphs:
        if required:
            raise BundleError(f"bundle {bundle.root} carries no hop_scorer graph")
        return None
    from edge.agent.hop_scorer import learned_scorer_from_bundle

    try:
        return learned_scorer_from_bundle(bundle, adapter_set=adapter_set)
    except BundleError as exc:
        if required:
            raise
        log.warning(
            "bundle %s: hop_scorer not usable (%s); the graph search uses the lexical scorer",
            bundle.root,
            exc,
        )
        return None


def scope_head(bundle: Bundle | None, graph: KnowledgeGraph) -> Any:
    """The bundle's scope head (abstention on nonsense), when it carries one; a /2 gate reads the
    keyword router's confidence (over the agent's graph)."""
    if bundle is None or "scope_head" not in bundle.manifest.graphs:
        return None
    from edge.agent.hop_scorer import OnnxScopeHead

    keyword = KeywordRouter(EntityLinker(graph))
    try:
        return OnnxScopeHead.from_bundle(bundle, keyword=lambda text: keyword.route(text)[1])
    except BundleError as exc:
        log.warning("bundle %s: scope_head not usable (%s); no abstention head", bundle.root, exc)
        return None


@dataclass(frozen=True)
class HeadsPolicy:
    """Which heads the agent takes from a bundle (``agent_kg_scorer``, ``agent_scope``)."""

    scorer: str = "auto"  # auto | lexical | learned
    scope: bool = True  # agent_scope=auto and the node routes with the bundle's head

    def load(
        self,
        bundle: Bundle | None,
        graph: KnowledgeGraph,
        like: PathReasoner,
        adapter_set: str | None = None,
    ) -> GraphHeads:
        """New heads from ``bundle`` (None: the lexical scorer, no gate); the reasoner is a
        fresh one (its own path cache) with ``like``'s graph, linker, beam and shared priors."""
        scorer = None
        if self.scorer != "lexical":
            scorer = learned_scorer(bundle, required=self.scorer == "learned", adapter_set=adapter_set)
        gate = scope_head(bundle, graph) if self.scope else None
        roles = [r for r, used in zip(HEAD_ROLES, (scorer, gate), strict=True) if used is not None]
        reasoner = PathReasoner(
            like.graph,
            scorer=scorer,  # None: the lexical cue scorer
            linker=like.linker,
            beam_width=like.beam_width,
            min_hop_prob=like.min_hop_prob,
            priors=like.priors,
        )
        if bundle is None:
            return GraphHeads(reasoner, gate)
        m = bundle.manifest
        served_set = adapter_set or m.default_adapter_set
        return GraphHeads(
            reasoner,
            gate,
            heads_digest(bundle, roles),
            model=f"{m.name}:{m.version}/{served_set}",  # as LoadedModel.label names it
            source=str(bundle.root),
            adapter_set=served_set,
        )


class HeadsSwapper:
    """``ModelManager.on_swap`` listener keeping ``target.heads`` on the served bundle.

    ``target``: the agent (anything with a ``heads`` attribute). Called on the event loop inside
    the swap; the rebuild runs in a worker thread (``asyncio.to_thread``) and its result is
    installed on the loop in one assignment, unless a newer swap came meanwhile (stale)."""

    def __init__(
        self,
        target: Any,
        policy: HeadsPolicy,
        graph: KnowledgeGraph,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.target = target
        self.policy = policy
        self.graph = graph
        self.metrics = metrics
        self.generation = 0  # swaps seen
        self.settled = 0  # the newest swap whose rebuild finished (installed, failed)
        self.last_error: str | None = None
        self.served: str | None = None  # the label of the model the newest swap activated
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, old: LoadedModel | None, new: LoadedModel) -> None:
        self.generation += 1
        gen = self.generation
        self.served = new.label
        heads: GraphHeads = self.target.heads
        if (
            gen == 1
            and new.source is not None
            and new.parent is None
            and heads.source is not None
            and Path(heads.source) == Path(new.source)
            and heads.adapter_set == new.adapter_set
        ):
            # the start-up load of the full bundle the agent was built from: its heads, named now
            self.settled = gen
            self.target.heads = replace(heads, model=new.label)
            return
        task = asyncio.get_running_loop().create_task(self._rebuild(gen, new))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _load(self, model: LoadedModel) -> GraphHeads:
        bundle = None
        if model.source is not None:
            bundle = open_bundle(model.source, parent=model.parent)
        heads = self.policy.load(bundle, self.graph, self.target.heads.reasoner, model.adapter_set)
        return replace(heads, model=model.label)

    async def _rebuild(self, gen: int, model: LoadedModel) -> None:
        try:
            heads = await asyncio.to_thread(self._load, model)
        except Exception as exc:  # keep serving with the heads in use
            if gen == self.generation:
                self.settled = gen
                self.last_error = f"{model.label}: {type(exc).__name__} (details in the node's log)"
                log.error(
                    "graph heads of %s could not be built (%s); keeping %s",
                    model.label,
                    exc,
                    self.target.heads.model or "the heads in use",
                )
            self._count("failed" if gen == self.generation else "stale")
            return
        if gen != self.generation:  # a newer swap is being rebuilt: its heads win
            self._count("stale")
            return
        self.target.heads = heads  # the switch: one assignment on the event loop thread
        self.settled = gen
        self.last_error = None
        self._count(heads.scorer_kind)
        log.info(
            "graph heads of %s: %s scorer%s (digest %s)",
            model.label,
            heads.scorer_kind,
            " + scope head" if heads.scope is not None else "",
            heads.digest or "-",
        )

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.heads_swaps.labels(self.metrics.node, result).inc()

    async def settled_all(self) -> None:
        """Wait for the rebuilds started so far (tests, shutdown)."""
        await asyncio.gather(*list(self._tasks))

    def status(self) -> dict[str, Any]:
        """``rebuilding``: the newest swap's heads are being built; ``last_error``: why the
        newest rebuild failed (the heads before it are in use), None after a success;
        ``served_model``: the model the newest swap activated; ``scope_gate``: whether the gate in
        use reads the served model's embeddings (``applied``), is skipped for them because it was
        built from another model (``skipped_model_mismatch``: while rebuilding, after a failed
        rebuild), or there is none (``none``)."""
        heads: GraphHeads = self.target.heads
        if heads.scope is None:
            gate = "none"
        elif heads.built_from(self.served):
            gate = "applied"
        else:
            gate = f"skipped_{SKIP_MODEL_MISMATCH}"
        return {
            "rebuilding": self.settled != self.generation,
            "last_error": self.last_error,
            "served_model": self.served,
            "scope_gate": gate,
        }
