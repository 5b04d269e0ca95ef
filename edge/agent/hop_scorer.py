"""The learned hop scorer on the edge: the bundle's ``hop_scorer`` graph (ONNX Runtime) scoring
candidate relations + STOP for :class:`skillpack.kg.reasoner.PathReasoner`.

The question state is embedded by the bundle's encoder exactly as at training time
(``skillpack.kg.hop_features.masked_question``); embeddings are cached per masked question, so a
3-hop search embeds the question once. Scores are a softmax over the candidates that really
leave the current entities (plus STOP after the first hop).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contracts.bundle import open_bundle
from contracts.errors import BundleError
from skillpack.kg.hop_features import RELATION_NAMES, STOP_INDEX, TYPE_NAMES, masked_question
from skillpack.kg.reasoner import HopState, LexicalHopScorer

Embed = Callable[[list[str]], np.ndarray]


class OnnxHopScorer:
    def __init__(self, graph_file: Path, meta: dict[str, object], embed: Embed, cache_size: int = 1024) -> None:
        if list(meta.get("relations", [])) != list(RELATION_NAMES):  # type: ignore[call-overload]
            raise BundleError("hop scorer was trained on another relation vocabulary than this skill pack's")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph_file), sess_options=so, providers=["CPUExecutionProvider"])
        self.embed = embed
        self.lexical = LexicalHopScorer()  # the cue features the head was trained with
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.calls = 0

    @classmethod
    def from_bundle(cls, bundle_dir: Path, embed: Embed | None = None) -> OnnxHopScorer:
        bundle = open_bundle(bundle_dir)
        if "hop_scorer" not in bundle.manifest.graphs:
            raise BundleError(f"bundle {bundle_dir} has no hop_scorer graph")
        meta = json.loads(bundle.file("hop_scorer.json").read_text(encoding="utf-8"))
        return cls(bundle.graph_file("hop_scorer"), meta, embed or bundle_embed(bundle_dir))

    def _embedding(self, text: str) -> np.ndarray:
        hit = self._cache.get(text)
        if hit is None:
            hit = np.asarray(self.embed([text]), dtype=np.float32)[0]
            self._cache[text] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return hit

    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        self.calls += 1
        text = masked_question(state.question, state.mention_span, state.start_type)
        emb = self._embedding(text)[None, :]
        prev = RELATION_NAMES.index(state.path[-1]) if state.path else STOP_INDEX
        cues = self.lexical(state, list(RELATION_NAMES)).astype(np.float32)[None, :]
        feeds = {"question_embedding": emb, "hop": np.array([len(state.path)], dtype=np.int64),
                 "prev_relation": np.array([prev], dtype=np.int64),
                 "entity_type": np.array([TYPE_NAMES.index(state.current_type)], dtype=np.int64),
                 "cue_scores": cues}
        logits = np.asarray(self.session.run(["relation_logits"], feeds)[0][0], dtype=np.float64)
        cols = [RELATION_NAMES.index(c) for c in candidates]
        z = np.array([*logits[cols], logits[STOP_INDEX] if state.path else -1e9])
        z = np.exp(z - z.max())
        out: np.ndarray = z / z.sum()
        return out


def bundle_embed(bundle_dir: Path, adapter_set: str | None = None) -> Embed:
    """Embeddings from the bundle's encoder (its own small ORT session, outside the batcher)."""
    from edge.runtime.bundle_session import BundleSession, bundle_tokenizer

    bundle = open_bundle(bundle_dir)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = BundleSession(bundle, adapter_set, session_options=so)
    tok = bundle_tokenizer(bundle)

    def embed(texts: list[str]) -> np.ndarray:
        ids, mask = tok([" ".join(t.split()).lower() for t in texts])
        return session.run(ids, mask)[0]

    return embed
