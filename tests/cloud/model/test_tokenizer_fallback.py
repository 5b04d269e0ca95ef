"""contracts.tokenizer's out-of-vocabulary character fallback (Chinese on an English vocabulary)."""

from __future__ import annotations

from tokenizers import Tokenizer

from cloud.model.base import default_base_path
from contracts.tokenizer import TextTokenizer, TokenizerSettings


def test_english_ids_equal_the_plain_tokenizer() -> None:
    base = default_base_path()
    raw = Tokenizer.from_file(str(base / "tokenizer.json"))
    raw.no_padding()
    texts = ["Is press P-12 running right now?", "convert 350 °F to celsius", "naïve CAFÉ"]
    assert TextTokenizer(base).encode_ids(texts) == [e.ids for e in raw.encode_batch(texts)]


def test_unknown_chinese_characters_get_distinct_stable_ids() -> None:
    tok = TextTokenizer(default_base_path())
    plain = TextTokenizer(default_base_path(), TokenizerSettings(oov_char_fallback=False))
    text = "把烤箱温度设为180度"
    assert plain.encode_ids([text])[0].count(plain.unk_id) >= 6  # what the vocabulary alone gives
    ids = tok.encode_ids([text])[0]
    assert tok.unk_id not in ids
    assert len(ids) == len(plain.encode_ids([text])[0])  # one id per character, nothing else moves
    chars = list(text.replace("180", "#"))
    by_char: dict[str, set[int]] = {}
    for ch, i in zip(chars, ids[1:-1], strict=True):
        by_char.setdefault(ch, set()).add(i)
    assert all(len(v) == 1 for v in by_char.values())  # "度" twice -> same id
    assert (
        len({next(iter(v)) for c, v in by_char.items() if c != "#"}) == len(by_char) - 1
    )  # distinct chars -> distinct ids
    assert tok.encode_ids(["温度"]) == tok.encode_ids(["温度"])


def test_truncation_after_fallback_keeps_sep() -> None:
    tok = TextTokenizer(default_base_path(), TokenizerSettings(max_length=8))
    ids = tok.encode_ids(["这是一个非常非常长的中文句子用来测试截断"])[0]
    assert len(ids) == 8 and ids[0] == 101 and ids[-1] == 102
