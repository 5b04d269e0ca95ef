"""Text normalisation shared by the skills: full-width → ASCII, Chinese and English number words
→ digits, so every extractor downstream only has to read Arabic numerals."""

from __future__ import annotations

import re
import unicodedata

_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10_000, "亿": 100_000_000}
_ZH_NUM_CHARS = "".join(_ZH_DIGITS) + "".join(_ZH_UNITS) + "".join(_ZH_BIG)
# Words that contain numeral characters but are not numbers (一下 = "a moment", 一共 = "in total" …).
_ZH_IDIOMS = (
    "一下",
    "一共",
    "一起",
    "一些",
    "一样",
    "一般",
    "一直",
    "统一",
    "万一",
    "一定",
    "唯一",
    "一个",
    "一台",
    "一条",
    "一号",
    "第一",
    "十分",
    "千万",
    "万能",
    "百科",
    "三思",
)
# an idiom that is a number in context: 九十分钟 (90 minutes) and 十分钟 are not 十分 ("very")
_NOT_IDIOM = {"十分": rf"(?<![{_ZH_NUM_CHARS}])十分(?!钟)"}
_ZH_IDIOM_KEEP = {"一个": "1个", "一台": "1台", "一条": "1条", "一号": "1号", "第一": "第1"}
_ZH_RUN = re.compile(rf"[{_ZH_NUM_CHARS}]+(?:点[{''.join(_ZH_DIGITS)}]+)?")

_EN_SMALL = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_SCALE = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
# the one-digit number words, English and Chinese (zero included): other modules read digits from these
DIGIT_WORDS: dict[str, int] = {**{w: n for w, n in _EN_SMALL.items() if n < 10}, **_ZH_DIGITS}
_EN_WORD = "|".join(sorted([*_EN_SMALL, *_EN_SCALE], key=len, reverse=True))
_EN_RUN = re.compile(rf"\b(?:{_EN_WORD})(?:(?:\s+|-|\s+and\s+)(?:{_EN_WORD}))*\b", re.IGNORECASE)


def to_ascii(text: str) -> str:
    """NFKC folds full-width digits, letters and punctuation (１２３，％) to ASCII; Chinese
    punctuation that NFKC keeps is mapped by hand."""
    text = unicodedata.normalize("NFKC", text)
    return text.translate(_PUNCT)


_PUNCT: dict[int, str | int | None] = {
    ord(k): v for k, v in {"。": ".", "×": "*", "÷": "/", "−": "-", "–": "-", "—": "-"}.items()
}


def zh_numeral_value(run: str) -> float | None:
    """Value of a Chinese numeral such as 三, 十五, 一百零五, 两千三百, 三点五, 二零二四; None if
    the run is not a well-formed number."""
    if "点" in run:
        whole, frac = run.split("点", 1)
        w = zh_numeral_value(whole) if whole else 0.0
        if w is None or not frac or any(c not in _ZH_DIGITS for c in frac):
            return None
        return float(f"{int(w)}.{''.join(str(_ZH_DIGITS[c]) for c in frac)}")
    if not run or not (any(c in _ZH_DIGITS for c in run) or run[0] == "十"):
        return None
    if all(c in _ZH_DIGITS for c in run):
        # 二零二四 → 2024 (digit by digit); a single digit is itself
        return float(int("".join(str(_ZH_DIGITS[c]) for c in run)))
    total, section, digit = 0, 0, None
    last_unit = 1
    section_unit = 10_000  # units inside a section must go down: 一千六百七十九千 is no number
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_UNITS:
            unit = _ZH_UNITS[ch]
            if unit >= section_unit:
                return None
            section_unit = unit
            section += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        elif ch in _ZH_BIG:
            big = _ZH_BIG[ch]
            section += digit or 0
            total = (total + section) * big if total and big > 10_000 else total + section * big
            section, digit, last_unit, section_unit = 0, None, big, 10_000
        else:
            return None
    if digit is not None:
        # colloquial 三千二 = 3200: a trailing digit right after a unit means the next unit down
        tail_scale = last_unit // 10 if last_unit >= 100 and not run.endswith("零" + run[-1:]) else 1
        if run[-2:-1] == "零":
            tail_scale = 1
        section += digit * max(tail_scale, 1)
    return float(total + section)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def zh_numerals_to_digits(text: str) -> str:
    """Replace Chinese numerals with Arabic digits (百分之十五 → 15%, 三点五 → 3.5)."""
    protected: list[str] = []
    for idiom in _ZH_IDIOMS:
        if idiom in text:
            keep = _ZH_IDIOM_KEEP.get(idiom)
            if keep is not None:
                text = text.replace(idiom, keep)
            else:
                protected.append(idiom)
                pattern = _NOT_IDIOM.get(idiom, re.escape(idiom))
                text = re.sub(pattern, f"\ue000{len(protected) - 1}\ue001", text)
    text = re.sub(r"百分之([\d.]+|[" + _ZH_NUM_CHARS + r"点]+)", r"\1%", text)

    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        value = zh_numeral_value(run)
        if (
            value is None
            and len(run) > 1
            and run[-1] in "千百"
            and (head := zh_numeral_value(run[:-1])) is not None
        ):
            return _fmt(head) + run[-1]  # 一千六百七十九千焦: the last 千 starts the unit (千焦 = kJ)
        return run if value is None else _fmt(value)

    text = _ZH_RUN.sub(repl, text)
    # digits followed by 万/千 as a multiplier: 3万 → 30000, 1.5万 → 15000
    text = re.sub(r"(\d+(?:\.\d+)?)万", lambda m: _fmt(float(m.group(1)) * 10_000), text)
    for i, idiom in enumerate(protected):
        text = text.replace(f"\ue000{i}\ue001", idiom)
    return text


def en_number_value(run: str) -> float | None:
    words = [w for w in re.split(r"[\s-]+", run.lower()) if w and w != "and"]
    total, current = 0, 0
    for w in words:
        if w in _EN_SMALL:
            current += _EN_SMALL[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _EN_SCALE:
            total += max(current, 1) * _EN_SCALE[w]
            current = 0
        else:
            return None
    return float(total + current)


def en_number_words_to_digits(text: str) -> str:
    """three → 3, twenty-five → 25, one hundred and five → 105 ("one of" etc. is left alone
    only when nothing numeric follows is not attempted: callers use this for quantities)."""

    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        # "and" joins only inside hundreds: "three and five" stays two numbers
        if re.search(r"\band\b", run, re.IGNORECASE) and not re.search(
            r"hundred|thousand|million", run, re.I
        ):
            parts = re.split(r"(\s+and\s+)", run, flags=re.IGNORECASE)
            return "".join(p if p.strip().lower() == "and" else _fmt(en_number_value(p) or 0) for p in parts)
        value = en_number_value(run)
        return run if value is None else _fmt(value)

    return _EN_RUN.sub(repl, text)


def normalize_numbers(text: str) -> str:
    """Full-width → ASCII, Chinese numerals and English number words → digits, thousands
    separators removed (1,000 → 1000; "3, 5" with a space stays a list)."""
    text = to_ascii(text)
    text = zh_numerals_to_digits(text)
    text = en_number_words_to_digits(text)
    text = re.sub(
        r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d,])", lambda m: m.group(1) + m.group(2).replace(",", ""), text
    )
    return text


NUMBER_RE = re.compile(r"[-+]?(?:\d+\.\d+|\d+\.?|\.\d+)(?:[eE][-+]?\d+)?")


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
