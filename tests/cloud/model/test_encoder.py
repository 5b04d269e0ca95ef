"""Our encoder equals transformers.BertModel on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import torch

from cloud.model import AutoGLMModel, BertEncoder
from cloud.model.base import default_base_path
from contracts.tokenizer import TextTokenizer, TokenizerSettings

TEXTS = [
    "Is press P-12 running right now?",
    "convert 350 fahrenheit to celsius",
    "hello",
    "who maintains oven OV-3 on line 4",
]


def test_matches_transformers_bert_on_minilm() -> None:
    transformers = __import__("transformers")
    base = default_base_path()
    ours = BertEncoder.from_pretrained(base).eval()
    ref = transformers.BertModel.from_pretrained(str(base), add_pooling_layer=False).eval()
    # plain ids (no OOV fallback) so both see exactly what the HF tokenizer would give
    ids, mask = TextTokenizer(base, TokenizerSettings(oov_char_fallback=False))(TEXTS)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.inference_mode():
        got = ours(ids_t, mask_t)
        want = ref(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
    valid = mask_t.bool()
    assert got.shape == want.shape
    assert (got[valid] - want[valid]).abs().max().item() < 1e-4


def test_mean_pooled_embedding_is_normalised_and_ignores_padding() -> None:
    base = default_base_path()
    model = AutoGLMModel.from_pretrained(base).eval()
    model.add_adapter_set("default", ["a", "b"])
    tok = TextTokenizer(base)
    short_ids, short_mask = tok(["hello"])
    padded_ids, padded_mask = tok(["hello", "a much longer sentence that forces padding on the first row"])
    with torch.inference_mode():
        alone = model(torch.from_numpy(short_ids), torch.from_numpy(short_mask))
        batch = model(torch.from_numpy(padded_ids), torch.from_numpy(padded_mask))
    assert torch.allclose(alone.embedding.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(alone.embedding[0], batch.embedding[0], atol=1e-5)
