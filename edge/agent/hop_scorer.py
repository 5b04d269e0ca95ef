"""The learned heads on the edge (ONNX Runtime, no torch): the bundle's ``hop_scorer`` graph
scoring candidate relations + STOP for :class:`skillpack.kg.reasoner.PathReasoner`, and its
``scope_head`` graph giving the probability that a request is nonsense / out of scope.

The question state is embedded by the bundle's encoder exactly as at training time
(``skillpack.kg.hop_features.masked_question`` + ``char_grams``); embeddings are cached per
masked question, so a 3-hop search embeds the question once. Scores are a softmax over the
candidates that really leave the current entities (plus STOP after the first hop). A bundle
from before the relation-description scorer (schema ``autoglm.hop_scorer/1``, a ``cue_scores``
input) still loads: its head is fed the lexical cue scores it was trained with.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contracts.bundle import Bundle, open_bundle
from contracts.errors import BundleError
from skillpack.kg.hop_features import (
    RELATION_NAMES,
    STOP_INDEX,
    TYPE_NAMES,
    char_grams,
    masked_question,
    question_windows,
)
from skillpack.kg.reasoner import HopState, LexicalHopScorer
from skillpack.kg.scope_features import TextFeatures, Vocabulary
from skillpack.text import to_ascii

Embed = Callable[[list[str]], np.ndarray]


def _opened(bundle: Path | Bundle) -> Bundle:
    """A bundle directory opened (verified), or a :class:`Bundle` the caller opened (an
    adapter-only update opened with its parent)."""
    return bundle if isinstance(bundle, Bundle) else open_bundle(bundle)


def _session(graph_file: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(graph_file), sess_options=so, providers=["CPUExecutionProvider"])


class OnnxHopScorer:
    def __init__(
        self, graph_file: Path, meta: dict[str, object], embed: Embed, cache_size: int = 1024
    ) -> None:
        if list(meta.get("relations", [])) != list(RELATION_NAMES):  # type: ignore[call-overload]
            raise BundleError("hop scorer was trained on another relation vocabulary than this skill pack's")
        self.session = _session(graph_file)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.schema = str(meta.get("schema", "autoglm.hop_scorer/1"))
        self.embed = embed
        self.lexical = LexicalHopScorer() if "cue_scores" in self.inputs else None  # only for /1 heads
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # prefetch() fills the cache from the agent's worker thread
        self.calls = 0
        # added to STOP's logit after the first hop (chosen on validation families at training time)
        self.stop_bias = float(meta.get("stop_bias", 0.0))  # type: ignore[arg-type]

    @classmethod
    def from_bundle(cls, bundle_dir: Path, embed: Embed | None = None) -> OnnxHopScorer:
        bundle = open_bundle(bundle_dir)
        if "hop_scorer" not in bundle.manifest.graphs:
            raise BundleError(f"bundle {bundle_dir} has no hop_scorer graph")
        meta = json.loads(bundle.file("hop_scorer.json").read_text(encoding="utf-8"))
        return cls(bundle.graph_file("hop_scorer"), meta, embed or bundle_embed(bundle_dir))

    def _embedding(self, text: str) -> np.ndarray:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        hit = np.asarray(self.embed([text]), dtype=np.float32)[0]
        with self._lock:
            self._cache[text] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return hit

    def prefetch(self, state: HopState) -> None:
        """Embed the state's masked question ahead of the search (cached; thread-safe)."""
        self._embedding(masked_question(state.question, state.mention_span, state.start_type))

    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        self.calls += 1
        text = masked_question(state.question, state.mention_span, state.start_type)
        feeds = {
            "question_embedding": self._embedding(text)[None, :],
            "hop": np.array([len(state.path)], dtype=np.int64),
            "prev_relation": np.array(
                [RELATION_NAMES.index(state.path[-1]) if state.path else STOP_INDEX], dtype=np.int64
            ),
            "entity_type": np.array([TYPE_NAMES.index(state.current_type)], dtype=np.int64),
        }
        if "char_grams" in self.inputs:
            feeds["char_grams"] = char_grams(text)[None, :]
        if self.lexical is not None:
            feeds["cue_scores"] = self.lexical(state, list(RELATION_NAMES)).astype(np.float32)[None, :]
        logits = np.asarray(self.session.run(["relation_logits"], feeds)[0][0], dtype=np.float64)
        cols = [RELATION_NAMES.index(c) for c in candidates]
        z = np.array([*logits[cols], logits[STOP_INDEX] + self.stop_bias if state.path else -1e9])
        z = np.exp(z - z.max())
        out: np.ndarray = z / z.sum()
        return out


class OnnxPathScorer:
    """The bundle's path scorer (schema ``autoglm.hop_scorer/3``): one ONNX run per question gives
    a distribution over every schema path from the start type (the empty path = describe); the
    beam search gets it as per-hop probabilities — P(next relation r | path so far) is the mass
    of the paths that continue with r, STOP the mass of the path so far — renormalised over the
    relations that really leave the current entities."""

    def __init__(
        self, graph_file: Path, meta: dict[str, object], embed: Embed, cache_size: int = 1024
    ) -> None:
        if list(meta.get("relations", [])) != list(RELATION_NAMES):  # type: ignore[call-overload]
            raise BundleError("path scorer was trained on another relation vocabulary than this skill pack's")
        self.session = _session(graph_file)
        self.schema = str(meta.get("schema"))
        self.embed = embed
        self.paths: list[tuple[str, tuple[str, ...]]] = [(str(p[0]), tuple(p[1:])) for p in meta["paths"]]  # type: ignore[attr-defined]
        self._cache: OrderedDict[tuple[str, str], dict[tuple[str, ...], float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # prefetch() fills the cache from the agent's worker thread
        self.calls = 0
        # added per relation of a path to its logit (a length prior chosen on validation families)
        self.length_bias = float(meta.get("length_bias", 0.0))  # type: ignore[arg-type]
        inputs = {i.name for i in self.session.get_inputs()}
        self.phrases = "window_embeddings" in inputs
        self.char_dim = int(meta.get("char_dim", 0) or 0) if "char_grams" in inputs else 0  # type: ignore[call-overload]
        self.char_words = bool(meta.get("char_words", True))

    def logits(self, text: str, start_type: str) -> np.ndarray:
        """The graph's path logits for a masked question: the question and (with the phrase
        granularity) its windows embedded in one encoder call."""
        windows = question_windows(text) if self.phrases else []
        emb = np.asarray(self.embed([text, *windows]), dtype=np.float32)
        feeds = {
            "question_embedding": emb[:1],
            "start_type": np.array([TYPE_NAMES.index(start_type)], dtype=np.int64),
        }
        if self.phrases:
            feeds["window_embeddings"] = emb[None, 1:]
            feeds["window_mask"] = np.ones((1, len(windows)), dtype=np.float32)
        if self.char_dim:
            feeds["char_grams"] = char_grams(text, self.char_dim, words=self.char_words)[None]
        out: np.ndarray = np.asarray(self.session.run(["path_logits"], feeds)[0][0], dtype=np.float64)
        return out

    def path_probabilities(self, text: str, start_type: str) -> dict[tuple[str, ...], float]:
        key = (text, start_type)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        logits = self.logits(text, start_type)
        cols = [i for i, (t, _) in enumerate(self.paths) if t == start_type]
        z = logits[cols] + self.length_bias * np.array([len(self.paths[i][1]) for i in cols])
        z = np.exp(z - z.max())
        z /= z.sum()
        probs = {self.paths[i][1]: float(p) for i, p in zip(cols, z, strict=True)}
        with self._lock:
            self._cache[key] = probs
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return probs

    def prefetch(self, state: HopState) -> None:
        """The question's path distribution ahead of the search: its one encoder call and graph
        run, cached for the beam search's hops (thread-safe)."""
        self.path_probabilities(
            masked_question(state.question, state.mention_span, state.start_type), state.start_type
        )

    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        self.calls += 1
        text = masked_question(state.question, state.mention_span, state.start_type)
        probs = self.path_probabilities(text, state.start_type)
        n = len(state.path)
        mass = dict.fromkeys(candidates, 0.0)
        stop = 0.0
        for path, p in probs.items():
            if path[:n] != state.path:
                continue
            if len(path) == n:
                stop += p
            elif path[n] in mass:
                mass[path[n]] += p
        out = np.array([*(mass[c] for c in candidates), stop]) + 1e-9
        result: np.ndarray = out / out.sum()
        return result


def learned_scorer_from_bundle(
    bundle_dir: Path | Bundle, embed: Embed | None = None, *, adapter_set: str | None = None
) -> OnnxHopScorer | OnnxPathScorer:
    """The bundle's ``hop_scorer`` graph: a path scorer (schema /3) or a per-hop scorer (/1, /2);
    its question embeddings from the bundle's encoder with ``adapter_set`` (default: the
    manifest's). An adapter-only update is passed opened with its parent."""
    bundle = _opened(bundle_dir)
    if "hop_scorer" not in bundle.manifest.graphs:
        raise BundleError(f"bundle {bundle.root} has no hop_scorer graph")
    meta = json.loads(bundle.file("hop_scorer.json").read_text(encoding="utf-8"))
    cls = OnnxPathScorer if str(meta.get("schema", "")).endswith("/3") else OnnxHopScorer
    return cls(bundle.graph_file("hop_scorer"), meta, embed or bundle_embed(bundle, adapter_set))


class OnnxScopeHead:
    """P(unsure) of a request from the router's embedding of it and its text; ``threshold`` is
    the abstention threshold calibrated at training time (bundle metadata). Schemas: ``/1`` (MLP
    on the embedding + character n-grams), ``/2`` (kNN + keyword gate: reads the keyword router's
    confidence), ``/3`` (small feature gate: the text features named in its metadata, computed by
    ``skillpack.kg.scope_features.TextFeatures`` with the vocabulary stored there)."""

    def __init__(
        self, graph_file: Path, meta: dict[str, object], keyword: Callable[[str], float] | None = None
    ) -> None:
        self.session = _session(graph_file)
        self.schema = str(meta.get("schema", "autoglm.scope_head/1"))
        self.threshold = float(meta["threshold"])  # type: ignore[arg-type]
        self.embed_dim = int(meta["embed_dim"])  # type: ignore[call-overload]
        self.inputs = {i.name for i in self.session.get_inputs()}
        names = [str(n) for n in meta.get("text_features", [])]  # type: ignore[attr-defined]
        if "text_features" in self.inputs and not names:
            raise BundleError("scope head /3 metadata names no text_features")
        self.keyword = keyword
        linker = None
        if keyword is None and ("keyword_confidence" in self.inputs or "keyword" in names):
            from edge.agent.routing import KeywordRouter
            from skillpack.kg.graph import default_graph
            from skillpack.kg.linking import EntityLinker

            linker = EntityLinker(default_graph())
            router = KeywordRouter(linker)
            self.keyword = lambda text: router.route(text)[1]
        self.text_features: TextFeatures | None = None
        if "text_features" in self.inputs:
            vocab = meta.get("vocabulary") or {}
            self.text_features = TextFeatures(
                names,
                keyword=self.keyword,
                vocabulary=Vocabulary.from_meta(vocab),  # type: ignore[arg-type]
                linker=linker,
            )

    @classmethod
    def from_bundle(
        cls, bundle_dir: Path | Bundle, keyword: Callable[[str], float] | None = None
    ) -> OnnxScopeHead:
        bundle = _opened(bundle_dir)
        if "scope_head" not in bundle.manifest.graphs:
            raise BundleError(f"bundle {bundle.root} has no scope_head graph")
        meta = json.loads(bundle.file("scope_head.json").read_text(encoding="utf-8"))
        return cls(bundle.graph_file("scope_head"), meta, keyword)

    def p_unsure(self, embedding: np.ndarray, text: str) -> float:
        emb = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if emb.shape[1] != self.embed_dim:
            raise BundleError(f"scope head expects {self.embed_dim}-d embeddings, got {emb.shape[1]}")
        feeds: dict[str, np.ndarray] = {"question_embedding": emb}
        if "char_grams" in self.inputs:
            feeds["char_grams"] = char_grams(to_ascii(text))[None, :]
        if self.keyword is not None and "keyword_confidence" in self.inputs:
            feeds["keyword_confidence"] = np.array([self.keyword(text)], dtype=np.float32)
        if self.text_features is not None:
            feeds["text_features"] = self.text_features(text)[None, :]
        logit = float(self.session.run(["unsure_logit"], feeds)[0][0])
        return 1.0 / (1.0 + float(np.exp(-logit)))


def bundle_embed(bundle_dir: Path | Bundle, adapter_set: str | None = None) -> Embed:
    """Embeddings from the bundle's encoder (its own small ORT session, outside the batcher); an
    adapter-only update is passed opened with its parent (its encoder graph lives there)."""
    from edge.runtime.bundle_session import BundleSession, bundle_tokenizer

    bundle = _opened(bundle_dir)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = BundleSession(bundle, adapter_set, session_options=so)
    tok = bundle_tokenizer(bundle)

    def embed(texts: list[str]) -> np.ndarray:
        ids, mask = tok([" ".join(t.split()).lower() for t in texts])
        return session.run(ids, mask)[0]

    return embed
