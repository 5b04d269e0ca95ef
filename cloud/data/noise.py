"""Surface noise shared by all routes: casing, punctuation, typos, fillers, spacing.

Noise never depends on the route, so the router cannot learn a route from it.
"""

from __future__ import annotations

import random

PREFIXES_EN = ["please ", "hey, ", "hi, ", "ok ", "so ", "um ", "assistant, ", "excuse me, ", "quick one: "]
SUFFIXES_EN = [" please", " thanks", " thx", " asap", " pls"]
END_PUNCT_EN = ["", "", "?", ".", "!", "??", " ?"]
PREFIXES_ZH = ["请问", "麻烦", "你好，", "嗯，", "那个，", "小助手，", "帮个忙，"]
SUFFIXES_ZH = ["，谢谢", "呢", "啊", "，麻烦了", "吧"]
END_PUNCT_ZH = ["", "", "？", "?", "。", "！"]
_KEYBOARD_NEIGHBOURS = {
    "a": "sq",
    "e": "wr",
    "i": "uo",
    "o": "ip",
    "u": "yi",
    "s": "ad",
    "t": "ry",
    "r": "et",
    "n": "bm",
    "m": "n",
    "l": "k",
    "c": "xv",
    "h": "gj",
    "p": "o",
    "d": "sf",
}


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swap neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double a letter
        return word[:i] + word[i] + word[i:]
    near = _KEYBOARD_NEIGHBOURS.get(word[i].lower())
    return word[:i] + rng.choice(near) + word[i + 1 :] if near else word


def noisy_en(text: str, rng: random.Random) -> str:
    if rng.random() < 0.15:
        text = rng.choice(PREFIXES_EN) + text
    if rng.random() < 0.08:
        text = text + rng.choice(SUFFIXES_EN)
    words = text.split(" ")
    if rng.random() < 0.2:
        candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if candidates:
            i = rng.choice(candidates)
            words[i] = _typo(words[i], rng)
    text = " ".join(words)
    r = rng.random()
    if r < 0.35:
        text = text.lower()
    elif r < 0.7:
        text = text[:1].upper() + text[1:]
    elif r < 0.75:
        text = text.upper()
    elif r < 0.8:
        text = text.title()
    return text + rng.choice(END_PUNCT_EN)


def noisy_zh(text: str, rng: random.Random) -> str:
    if rng.random() < 0.2:
        text = rng.choice(PREFIXES_ZH) + text
    if rng.random() < 0.1:
        text = text + rng.choice(SUFFIXES_ZH)
    if rng.random() < 0.25:  # spaces between Chinese and Latin/digits
        out = []
        for i, ch in enumerate(text):
            if i and ch.isascii() != text[i - 1].isascii() and not ch.isspace() and not text[i - 1].isspace():
                out.append(" ")
            out.append(ch)
        text = "".join(out)
    if len(text) > 6 and rng.random() < 0.08:  # a dropped or doubled character
        i = rng.randrange(1, len(text) - 1)
        text = text[:i] + text[i + 1 :] if rng.random() < 0.5 else text[:i] + text[i] + text[i:]
    r = rng.random()
    if r < 0.15:
        text = text.lower()
    elif r < 0.25:
        text = text.upper()
    return text + rng.choice(END_PUNCT_ZH)


def add_noise(text: str, lang: str, rng: random.Random) -> str:
    return noisy_zh(text, rng) if lang == "zh" else noisy_en(text, rng)


FILLERS_EN = ["just", "actually", "really", "um", "kindly", "quickly", "basically", "like", "uh"]
FILLERS_ZH = ["就", "那个", "嗯", "一下", "呀", "的话", "麻烦"]


def augment(text: str, lang: str, rng: random.Random) -> str:
    """Training-only perturbation: drop, swap, repeat or insert a filler word (EN) / character (ZH).

    Makes the router use several cues of a request instead of one exact phrasing, which is what
    carries over to phrasings it never saw.
    """
    units: list[str] = text.split(" ") if lang == "en" else list(text)
    if len(units) < 4:
        return text
    i = rng.randrange(len(units) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        del units[i]
    elif kind == 1:
        units[i], units[i + 1] = units[i + 1], units[i]
    elif kind == 2:
        units.insert(i, units[i])
    else:
        units.insert(i, rng.choice(FILLERS_EN if lang == "en" else FILLERS_ZH))
    return (" " if lang == "en" else "").join(units)
