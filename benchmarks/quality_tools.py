"""Calculator and unit conversion on GENERATED questions, checked against reference evaluators.

Every question is generated from a seeded random structure (an expression tree, a conversion),
phrased in English or Chinese (Chinese questions write about half of their integers in Chinese
number words: 三百二十五, 两千, 一万五, 一千零五, 三点五), and its gold value is computed from
the structure by an evaluator that shares no code with the skills:

* arithmetic: :class:`fractions.Fraction` (exact) and :class:`decimal.Decimal` (square roots,
  40 digits);
* units: ``pint`` (its own unit definitions; the two units pint lacks, 市斤 jin and 亩 mu, and the
  international acre are defined here from their legal definitions).

A question counts as an exact match when the skill's value equals the gold value to a relative
1e-9 (arithmetic; float64 arithmetic) or 1e-9 (units; the skill rounds to 12 significant
digits). Errors (the skill found nothing) count as misses. Exact match is reported per category
and language, and for Chinese-numeral questions separately; the goal is 100 %.

The generators are frozen (``GENERATOR_VERSION``): they were committed before the first full
run and are not changed after looking at the skills' errors (docs/EVALUATION.md) — a failure
class found here is fixed in the skill, and the benchmark is rerun unchanged.

Usage: ``python benchmarks/quality_tools.py [--n 40] [--seed 2026]`` (``--n`` questions per
category and language). Prints a table, the failure classes, a JSON line, and writes a record
under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, getcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402

GENERATOR_VERSION = 1
REL_TOL = 1e-9
CALC_CATEGORIES = ("symbolic", "words", "percent", "aggregate", "power")


@dataclass(frozen=True)
class Case:
    tool: str  # "calculator" | "units"
    category: str
    lang: str  # "en" | "zh"
    zh_numerals: bool  # the question writes a number in Chinese number words
    text: str
    gold: float


# ----------------------------------------------------------------------------- Chinese numbers
_ZH_DIGIT = "零一二三四五六七八九"


def _zh_section(n: int, rng: random.Random, top: bool) -> str:
    """0 < n < 10000 in Chinese numerals (一千零五, 三百二十五, 十五 at the top)."""
    out = []
    units = [(1000, "千"), (100, "百"), (10, "十"), (1, "")]
    zero = False
    started = False
    for value, name in units:
        d = n // value % 10
        if d == 0:
            zero = started
            continue
        if zero:
            out.append("零")
            zero = False
        if d == 1 and value == 10 and top and not started:
            out.append("十")  # 十五, not 一十五
        else:
            digit = (
                "两"
                if d == 2 and value in (100, 1000) and not started and rng.random() < 0.5
                else _ZH_DIGIT[d]
            )
            out.append(digit + name)
        started = True
    return "".join(out)


def zh_int(n: int, rng: random.Random, colloquial: bool = False) -> str:
    """0 <= n < 10^8 in Chinese number words; ``colloquial`` shortens 15000 → 一万五, 2500 → 两千五,
    350 → 三百五 where the number has that shape."""
    if n == 0:
        return "零"
    if colloquial:
        for value, name in ((10000, "万"), (1000, "千"), (100, "百")):
            lead, rest = divmod(n, value)
            if 1 <= lead <= 9 and rest and rest % (value // 10) == 0 and rest // (value // 10) <= 9:
                head = "两" if lead == 2 and value != 10000 else _ZH_DIGIT[lead]
                return f"{head}{name}{_ZH_DIGIT[rest // (value // 10)]}"
    high, low = divmod(n, 10000)
    if not high:
        return _zh_section(low, rng, top=True)
    text = _zh_section(high, rng, top=True) + "万"
    if low:
        text += ("零" if low < 1000 else "") + _zh_section(low, rng, top=False)
    return text


def zh_number(x: Fraction, rng: random.Random) -> str:
    """An integer or a one/two-decimal number in Chinese words (三点五)."""
    if x.denominator == 1:
        return zh_int(int(x), rng, colloquial=rng.random() < 0.3)
    whole = int(x)
    digits = str(Decimal(x.numerator) / Decimal(x.denominator)).split(".")[1]
    return f"{zh_int(whole, rng)}点{''.join(_ZH_DIGIT[int(d)] for d in digits)}"


def fmt(x: Fraction) -> str:
    """A generated operand in digits (integers, or decimals with up to two places)."""
    if x.denominator == 1:
        return str(x.numerator)
    return str(Decimal(x.numerator) / Decimal(x.denominator))


def number(rng: random.Random, lo: int = 1, hi: int = 999, decimals: float = 0.2) -> Fraction:
    if rng.random() < decimals:
        return (
            Fraction(rng.randint(lo * 10, hi * 10), 10)
            if rng.random() < 0.7
            else Fraction(rng.randint(lo * 100, hi * 100), 100)
        )
    return Fraction(rng.randint(lo, hi))


class Speller:
    """How one question writes its numbers: digits, or (Chinese, about half of the questions)
    Chinese number words for the numbers that have them (non-negative, < 10^8)."""

    def __init__(self, rng: random.Random, lang: str) -> None:
        self.rng = rng
        self.words = lang == "zh" and rng.random() < 0.5
        self.used_words = False

    def __call__(self, x: Fraction) -> str:
        if self.words and 0 <= x < 10**8 and (x * 100).denominator == 1:
            self.used_words = True
            return zh_number(x, self.rng)
        return fmt(x)


# ----------------------------------------------------------------------------- arithmetic
_OPS: dict[str, tuple[int, Callable[[Fraction, Fraction], Fraction]]] = {
    "+": (1, lambda a, b: a + b),
    "-": (1, lambda a, b: a - b),
    "*": (2, lambda a, b: a * b),
    "/": (2, lambda a, b: a / b),
}
_EN_OP = {"+": ["plus", "added to"], "-": ["minus"], "*": ["times", "multiplied by"], "/": ["divided by"]}
_ZH_OP = {"+": ["加", "加上"], "-": ["减", "减去"], "*": ["乘以", "乘"], "/": ["除以"]}


def eval_flat(numbers: list[Fraction], ops: list[str]) -> Fraction:
    """Reference: operator precedence (* / before + -), left to right, exact fractions."""
    vals, pending = [numbers[0]], []
    for op, x in zip(ops, numbers[1:], strict=True):
        if _OPS[op][0] == 2:
            vals[-1] = _OPS[op][1](vals[-1], x)
        else:
            pending.append(op)
            vals.append(x)
    out = vals[0]
    for op, x in zip(pending, vals[1:], strict=True):
        out = _OPS[op][1](out, x)
    return out


def tree(rng: random.Random, depth: int) -> tuple[str, Fraction, int]:
    """(text, exact value, precedence) of a random expression tree with parentheses where needed."""
    if depth == 0 or rng.random() < 0.3:
        x = number(rng, 1, 99 if depth else 999)
        return fmt(x), x, 3
    op = rng.choice("+-*/")
    prec = _OPS[op][0]
    lt, lv, lp = tree(rng, depth - 1)
    rt, rv, rp = tree(rng, depth - 1)
    if op == "/" and rv == 0:
        rt, rv, rp = "7", Fraction(7), 3
    lt = f"({lt})" if lp < prec else lt
    rt = f"({rt})" if rp < prec or (rp == prec and op in "-/") else rt
    return f"{lt} {op} {rt}", _OPS[op][1](lv, rv), prec


def calc_case(category: str, lang: str, rng: random.Random) -> Case:
    sp = Speller(rng, lang)
    en = lang == "en"
    if category == "symbolic":
        text, gold, _ = tree(rng, rng.choice([2, 3]))
        while text.count(" ") < 2:  # at least one operator
            text, gold, _ = tree(rng, 2)
        q = rng.choice(
            ["what is {}?", "calculate {}", "{} = ?", "compute {}"]
            if en
            else ["{}等于多少", "计算{}", "{}是多少？", "请算一下{}"]
        ).format(text)
        return Case("calculator", category, lang, False, q, float(gold))
    if category == "words":
        k = rng.choice([2, 2, 3])
        nums = [number(rng, 1, 999 if k == 2 else 99, decimals=0.15) for _ in range(k)]
        ops = [rng.choice("+-*/") for _ in range(k - 1)]
        words = _EN_OP if en else _ZH_OP
        parts = [sp(nums[0])]
        for op, x in zip(ops, nums[1:], strict=True):
            parts += [rng.choice(words[op]), sp(x)]
        body = " ".join(parts) if en else "".join(parts)
        q = rng.choice(
            ["what is {}?", "{}", "how much is {}"] if en else ["{}等于多少", "{}是多少", "算一下{}"]
        ).format(body)
        return Case("calculator", category, lang, sp.used_words, q, float(eval_flat(nums, ops)))
    if category == "percent":
        p = (
            Fraction(rng.choice([1, 2, 5, 10, 12, 15, 20, 25, 30, 40, 50, 75, 80, 120, 150]))
            if rng.random() < 0.8
            else Fraction(rng.randint(1, 999), 10)
        )
        x = number(rng, 1, 5000, decimals=0.1)
        gold = p * x / 100
        if en:
            q = rng.choice(
                ["{p}% of {x}", "what is {p}% of {x}?", "{p} percent of {x}", "calculate {p} percent of {x}"]
            )
            return Case("calculator", category, lang, False, q.format(p=fmt(p), x=fmt(x)), float(gold))
        if sp.words and rng.random() < 0.5:
            q = rng.choice(["{x}的百分之{p}", "{x}的百分之{p}是多少"]).format(x=sp(x), p=sp(p))
        else:
            q = rng.choice(["{x}的{p}%", "{x}的{p}%是多少", "{x}乘以{p}%"]).format(x=sp(x), p=fmt(p))
        return Case("calculator", category, lang, sp.used_words, q, float(gold))
    if category == "aggregate":
        kind = rng.choice(["avg", "sum", "max", "min"])
        nums = [number(rng, 1, 999, decimals=0.15) for _ in range(rng.randint(3, 5))]
        gold = {
            "avg": sum(nums, Fraction(0)) / len(nums),
            "sum": sum(nums, Fraction(0)),
            "max": max(nums),
            "min": min(nums),
        }[kind]
        if en:
            listed = ", ".join(fmt(x) for x in nums[:-1]) + f" and {fmt(nums[-1])}"
            word = rng.choice(
                {"avg": ["average", "mean"], "sum": ["sum", "total"], "max": ["maximum"], "min": ["minimum"]}[
                    kind
                ]
            )
            q = rng.choice(["{w} of {l}", "what is the {w} of {l}?", "the {w} of {l}"]).format(
                w=word, l=listed
            )
        else:
            listed = "、".join(sp(x) for x in nums[:-1]) + f"和{sp(nums[-1])}"
            word = rng.choice(
                {"avg": ["平均值", "平均数"], "sum": ["总和", "之和"], "max": ["最大值"], "min": ["最小值"]}[
                    kind
                ]
            )
            q = rng.choice(["{l}的{w}", "{l}的{w}是多少", "求{l}的{w}"]).format(w=word, l=listed)
        return Case("calculator", category, lang, sp.used_words, q, float(gold))
    if category == "power":
        kind = rng.choice(["square", "cube", "pow", "sqrt"])
        if kind == "sqrt":
            m = Fraction(rng.randint(2, 99) ** 2) if rng.random() < 0.6 else Fraction(rng.randint(2, 9999))
            getcontext().prec = 40
            gold_f = float(Decimal(int(m)).sqrt())
            q = rng.choice(
                ["square root of {m}", "what is the square root of {m}?", "sqrt {m}"]
                if en
                else ["{m}的平方根", "根号{m}", "{m}的平方根是多少"]
            ).format(m=sp(m))
            return Case("calculator", category, lang, sp.used_words, q, gold_f)
        a = number(rng, 2, 99 if kind != "pow" else 20, decimals=0.1)
        n = {"square": 2, "cube": 3}.get(kind) or rng.randint(2, 6)
        gold = a**n
        if en:
            q = {
                "square": "{a} squared",
                "cube": "{a} cubed",
                "pow": rng.choice(["{a} to the power of {n}", "what is {a} to the power of {n}?", "{a}^{n}"]),
            }[kind]
        else:
            q = {
                "square": "{a}的平方",
                "cube": "{a}的立方",
                "pow": rng.choice(["{a}的{n}次方", "{a}的{n}次幂"]),
            }[kind]
        return Case("calculator", category, lang, sp.used_words, q.format(a=sp(a), n=n), float(gold))
    raise ValueError(category)


# ----------------------------------------------------------------------------- units
# canonical key -> (pint expression, dimension, English surface forms, Chinese surface forms);
# the surface forms are written here, not taken from the skill's alias table.
UNIT_TABLE: dict[str, tuple[str, str, list[str], list[str]]] = {
    "km": ("kilometer", "length", ["km", "kilometers", "kilometres"], ["公里", "千米"]),
    "m": ("meter", "length", ["meters", "metres"], ["米"]),
    "cm": ("centimeter", "length", ["cm", "centimeters"], ["厘米"]),
    "mm": ("millimeter", "length", ["mm", "millimeters"], ["毫米"]),
    "mi": ("mile", "length", ["miles"], ["英里"]),
    "ft": ("foot", "length", ["feet", "ft"], ["英尺"]),
    "in": ("inch", "length", ["inches"], ["英寸"]),
    "yd": ("yard", "length", ["yards"], ["码"]),
    "kg": ("kilogram", "mass", ["kg", "kilograms"], ["公斤", "千克"]),
    "g": ("gram", "mass", ["grams"], ["克"]),
    "lb": ("pound", "mass", ["pounds", "lbs"], ["磅"]),
    "oz": ("ounce", "mass", ["ounces", "oz"], ["盎司"]),
    "t": ("metric_ton", "mass", ["tonnes", "metric tons"], ["吨"]),
    "jin": ("jin", "mass", ["jin"], ["斤"]),
    "°C": ("degC", "temperature", ["°C", "degrees Celsius", "Celsius"], ["摄氏度"]),
    "°F": ("degF", "temperature", ["°F", "degrees Fahrenheit", "Fahrenheit"], ["华氏度"]),
    "K": ("kelvin", "temperature", ["kelvin"], ["开尔文"]),
    "bar": ("bar", "pressure", ["bar"], ["巴"]),
    "psi": ("psi", "pressure", ["psi"], ["磅每平方英寸"]),
    "kPa": ("kilopascal", "pressure", ["kPa", "kilopascals"], ["千帕"]),
    "MPa": ("megapascal", "pressure", ["MPa", "megapascals"], ["兆帕"]),
    "atm": ("atm", "pressure", ["atm", "atmospheres"], ["标准大气压"]),
    "L": ("liter", "volume", ["liters", "litres", "L"], ["升"]),
    "mL": ("milliliter", "volume", ["ml", "milliliters"], ["毫升"]),
    "gal": ("gallon", "volume", ["gallons"], ["加仑"]),
    "m³": ("meter ** 3", "volume", ["cubic meters"], ["立方米"]),
    "cup": ("cup", "volume", ["cups"], ["量杯"]),
    "km/h": (
        "kilometer / hour",
        "speed",
        ["km/h", "kilometers per hour", "kph"],
        ["公里每小时", "千米每小时"],
    ),
    "mph": ("mile / hour", "speed", ["mph", "miles per hour"], ["英里每小时"]),
    "m/s": ("meter / second", "speed", ["m/s", "meters per second"], ["米每秒"]),
    "kn": ("knot", "speed", ["knots"], ["节"]),
    "J": ("joule", "energy", ["joules"], ["焦耳"]),
    "kJ": ("kilojoule", "energy", ["kJ", "kilojoules"], ["千焦"]),
    "kWh": ("kilowatt_hour", "energy", ["kWh", "kilowatt-hours"], ["千瓦时"]),
    "kcal": ("kilocalorie", "energy", ["kcal", "kilocalories"], ["千卡", "大卡"]),
    "cal": ("calorie", "energy", ["calories"], ["卡路里"]),
    "W": ("watt", "power", ["watts"], ["瓦"]),
    "kW": ("kilowatt", "power", ["kW", "kilowatts"], ["千瓦"]),
    "hp": ("horsepower", "power", ["horsepower", "hp"], ["马力"]),
    "m²": ("meter ** 2", "area", ["square meters", "m²"], ["平方米"]),
    "ft²": ("foot ** 2", "area", ["square feet"], ["平方英尺"]),
    "ha": ("hectare", "area", ["hectares"], ["公顷"]),
    "acre": ("intl_acre", "area", ["acres"], ["英亩"]),
    "mu": ("mu", "area", ["mu"], ["亩"]),
    "s": ("second", "time", ["seconds"], ["秒"]),
    "min": ("minute", "time", ["minutes"], ["分钟"]),
    "h": ("hour", "time", ["hours"], ["小时"]),
    "d": ("day", "time", ["days"], ["天"]),
}
UNIT_DIMENSIONS = tuple(sorted({v[1] for v in UNIT_TABLE.values()}))
_UREG: Any = None


def ureg() -> Any:
    global _UREG
    if _UREG is None:
        import pint

        _UREG = pint.UnitRegistry()
        _UREG.define("jin = 0.5 * kilogram")  # 市斤, PRC legal definition
        _UREG.define("mu = 10000 / 15 * meter ** 2")  # 亩 = 1/15 hectare
        _UREG.define("intl_acre = 4046.8564224 * meter ** 2")  # international acre (pint's acre is US survey)
    return _UREG


def reference_convert(value: Fraction, src: str, dst: str) -> float:
    u = ureg()
    return float(u.Quantity(float(value), UNIT_TABLE[src][0]).to(UNIT_TABLE[dst][0]).magnitude)


def unit_case(dimension: str, lang: str, rng: random.Random) -> Case:
    keys = [k for k, v in UNIT_TABLE.items() if v[1] == dimension]
    src, dst = rng.sample(keys, 2)
    if dimension == "temperature":
        lo = {"°C": -60, "°F": -76, "K": 1}[src]
        value = (
            Fraction(rng.randint(lo, 600)) if rng.random() < 0.8 else Fraction(rng.randint(lo * 10, 6000), 10)
        )
    else:
        value = number(rng, 1, 5000, decimals=0.25)
    sp = Speller(rng, lang)
    v = sp(value)
    if lang == "en":
        a, b = rng.choice(UNIT_TABLE[src][2]), rng.choice(UNIT_TABLE[dst][2])
        q = rng.choice(
            [
                "convert {v} {a} to {b}",
                "how many {b} is {v} {a}?",
                "{v} {a} in {b}",
                "what is {v} {a} in {b}?",
                "{v} {a} to {b}",
            ]
        ).format(v=v, a=a, b=b)
    else:
        a, b = rng.choice(UNIT_TABLE[src][3]), rng.choice(UNIT_TABLE[dst][3])
        q = rng.choice(
            ["{v}{a}等于多少{b}", "把{v}{a}换算成{b}", "{v}{a}是多少{b}", "{v}{a}换算成{b}是多少"]
        ).format(v=v, a=a, b=b)
    return Case("units", dimension, lang, sp.used_words, q, reference_convert(value, src, dst))


def generate(n: int, seed: int) -> list[Case]:
    """``n`` questions per (category, language) for the calculator and per (dimension, language)
    for units; deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for lang in ("en", "zh"):
        for cat in CALC_CATEGORIES:
            out += [calc_case(cat, lang, rng) for _ in range(n)]
        for dim in UNIT_DIMENSIONS:
            out += [unit_case(dim, lang, rng) for _ in range(n)]
    return out


# ----------------------------------------------------------------------------- scoring
def check(
    cases: list[Case], solve_calc: Callable[[str], Any], solve_units: Callable[[str], Any]
) -> dict[str, Any]:
    """Exact match per tool, category and language (and Chinese-numeral questions), plus failures."""
    from contracts.errors import AutoGLMError

    buckets: dict[str, list[bool]] = defaultdict(list)
    failures: list[dict[str, Any]] = []
    for c in cases:
        try:
            got = (
                float(solve_calc(c.text).value)
                if c.tool == "calculator"
                else float(solve_units(c.text).result)
            )
            ok = abs(got - c.gold) <= REL_TOL * max(1.0, abs(c.gold))
            detail = f"{got!r} != {c.gold!r}"
        except AutoGLMError as exc:
            ok, detail = False, f"error: {exc.message}"
        for key in (c.tool, f"{c.tool}/{c.lang}", f"{c.tool}/{c.category}/{c.lang}"):
            buckets[key].append(ok)
        if c.zh_numerals:
            buckets[f"{c.tool}/zh_numerals"].append(ok)
        if not ok:
            failures.append(
                {"tool": c.tool, "category": c.category, "lang": c.lang, "text": c.text, "detail": detail}
            )
    em = {k: round(sum(v) / len(v), 4) for k, v in sorted(buckets.items())}
    n = {k: len(v) for k, v in sorted(buckets.items())}
    classes = Counter(f"{f['tool']}/{f['category']}/{f['lang']}" for f in failures)
    return {
        "exact_match": em,
        "n": n,
        "failures": len(failures),
        "failure_classes": dict(classes.most_common()),
        "failure_examples": failures[:40],
        "goal_met": {tool: em.get(tool, 0.0) == 1.0 for tool in ("calculator", "units")},
    }


def headline(result: dict[str, Any]) -> list[HeadlineRow]:
    em, n = result["exact_match"], result["n"]
    rows = []
    for tool, what, ref in (
        ("calculator", "Calculator exact match, generated EN/ZH questions", "fractions/decimal"),
        ("units", "Unit conversion exact match, generated EN/ZH questions", "pint"),
    ):
        zh_words = em.get(f"{tool}/zh_numerals")
        rows.append(
            HeadlineRow(
                what=f"{what} ({n[tool]}, reference {ref})",
                baseline="—",
                result=f"{em[tool] * 100:.1f} % (EN {em[f'{tool}/en'] * 100:.1f} %, "
                f"ZH {em[f'{tool}/zh'] * 100:.1f} %"
                + (f", Chinese number words {zh_words * 100:.1f} %" if zh_words is not None else "")
                + ")",
                target="100 %",
                met=result["goal_met"][tool],
            )
        )
    return rows


def figures(result: dict[str, Any]) -> list[Any]:
    """Exact match per category (calculator) and dimension (units), EN vs ZH."""
    from autoglm.plots import Figure

    em = result["exact_match"]
    out = []
    for tool, cats in (("calculator", CALC_CATEGORIES), ("units", UNIT_DIMENSIONS)):
        out.append(
            Figure(
                title=f"{tool}: exact match on generated questions",
                kind="bars",
                categories=list(cats),
                ylabel="exact match",
                series={
                    lang.upper(): [em.get(f"{tool}/{c}/{lang}", 0.0) for c in cats] for lang in ("en", "zh")
                },
            )
        )
    return out


def main() -> int:
    from skillpack import calculator, units

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="questions per category (dimension) and language")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-record", action="store_true", help="print only; write no record")
    args = ap.parse_args()
    cases = generate(args.n, args.seed)
    result = check(cases, calculator.solve, units.solve)
    em = result["exact_match"]
    for tool in ("calculator", "units"):
        print(f"{tool}: {em[tool] * 100:.1f} % exact match of {result['n'][tool]}")
        for key in sorted(k for k in em if k.startswith(tool + "/")):
            print(f"  {key:<32} {em[key] * 100:6.1f} %  (n={result['n'][key]})")
    print(f"failures: {result['failures']}; classes: {result['failure_classes']}")
    for f in result["failure_examples"][:15]:
        print(f"  [{f['tool']}/{f['category']}/{f['lang']}] {f['text']!r}: {f['detail']}")
    metrics = {
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "n_per_category": args.n,
        "rel_tol": REL_TOL,
        **result,
    }
    print(json.dumps({"bench": "tools", **metrics}, ensure_ascii=False))
    if not args.no_record:
        write_record("tools", metrics, headline(result), figures=figures(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
