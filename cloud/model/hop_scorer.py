"""The hop-scorer head: scores the candidate relations (and STOP) of the knowledge-graph path
search against the question state.

Inputs (one row per search state):
    question_embedding  float32 [B, D]  the bundle encoder's sentence embedding of the question
                                         with the topic entity replaced by its type word
    hop                 int64   [B]     hops taken so far (0, 1, 2)
    prev_relation       int64   [B]     index of the relation just taken (``len(RELATIONS)`` = none)
    entity_type         int64   [B]     type of the entity reached so far
    cue_scores          float32 [B, R+1] the lexical cue scores of every relation and STOP in this state
                                         (``skillpack.kg.reasoner.LexicalHopScorer``, identical on both sides)
Output:
    relation_logits     float32 [B, len(RELATIONS) + 1]   (last column = STOP)

The edge masks the relations that do not leave the current entities and takes a softmax. The
head is trained on the generated train-split questions (``skillpack.kg.questions``) by
``cloud.training.hop_scorer`` and exported as the bundle's ``hop_scorer`` graph.
"""

from __future__ import annotations

import torch
from torch import nn

from skillpack.kg.hop_features import MAX_HOPS, RELATION_NAMES, STOP_INDEX, TYPE_NAMES, masked_question

__all__ = ["MAX_HOPS", "RELATION_NAMES", "STOP_INDEX", "TYPE_NAMES", "HopScorer", "masked_question", "type_index"]


class HopScorer(nn.Module):
    def __init__(self, embed_dim: int, hidden: int = 128, dropout: float = 0.1, embed_dropout: float = 0.5) -> None:
        super().__init__()
        n_out = len(RELATION_NAMES) + 1
        self.embed_dim = embed_dim
        # dropping much of the sentence embedding in training keeps the head from memorising the
        # training phrasings and makes it use the cue features too
        self.embed_drop = nn.Dropout(embed_dropout)
        self.prev = nn.Embedding(len(RELATION_NAMES) + 1, 32)
        self.hop = nn.Embedding(MAX_HOPS + 1, 16)
        self.etype = nn.Embedding(len(TYPE_NAMES), 16)
        self.state = nn.Sequential(
            nn.Linear(embed_dim + 32 + 16 + 16 + n_out, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(),
        )
        self.out = nn.Linear(hidden, n_out)

    def forward(self, question_embedding: torch.Tensor, hop: torch.Tensor, prev_relation: torch.Tensor,
                entity_type: torch.Tensor, cue_scores: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.embed_drop(question_embedding), self.prev(prev_relation), self.hop(hop.clamp(0, MAX_HOPS)),
                       self.etype(entity_type), cue_scores], dim=-1)
        logits: torch.Tensor = self.out(self.state(x))
        return logits


def type_index(entity_type: str) -> int:
    return TYPE_NAMES.index(entity_type)
