"""benchmarks/quality_tools.py can fail: an off-by-one calculator / a unit converter with a wrong
factor misses the 100 % goal; a component that returns the reference value meets it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from skillpack import calculator, units
from tests.benchmarks.conftest import load_bench

qt = load_bench("quality_tools")


@dataclass
class _Value:
    value: float
    result: float


def _oracle(cases: list[Any]) -> Any:
    gold = {c.text: c.gold for c in cases}
    return lambda text: _Value(gold[text], gold[text])


def test_generator_is_deterministic_and_covers_categories_languages_and_chinese_numerals() -> None:
    a, b = qt.generate(3, seed=11), qt.generate(3, seed=11)
    assert [c.text for c in a] == [c.text for c in b]
    assert {(c.tool, c.category, c.lang) for c in a} == (
        {("calculator", cat, lang) for cat in qt.CALC_CATEGORIES for lang in ("en", "zh")}
        | {("units", dim, lang) for dim in qt.UNIT_DIMENSIONS for lang in ("en", "zh")}
    )
    assert any(c.zh_numerals for c in qt.generate(10, seed=11))


def test_chinese_number_words() -> None:
    import random

    rng = random.Random(0)
    assert qt.zh_int(325, rng) == "三百二十五"
    assert qt.zh_int(1005, rng) == "一千零五"
    assert qt.zh_int(15, rng) == "十五"
    assert qt.zh_int(15000, rng, colloquial=True) == "一万五"
    assert qt.zh_int(100500, rng) == "十万零五百"
    assert qt.zh_int(2000, rng) in ("两千", "二千")
    assert qt.zh_number(Fraction(7, 2), rng) == "三点五"


def test_reference_evaluators() -> None:
    assert qt.eval_flat([Fraction(2), Fraction(3), Fraction(4)], ["+", "*"]) == 14
    assert qt.eval_flat([Fraction(8), Fraction(2), Fraction(2)], ["-", "-"]) == 4
    assert abs(qt.reference_convert(Fraction(100), "°C", "°F") - 212) < 1e-9
    assert abs(qt.reference_convert(Fraction(1), "acre", "m²") - 4046.8564224) < 1e-6
    assert abs(qt.reference_convert(Fraction(15), "mu", "ha") - 1.0) < 1e-12


def test_off_by_one_calculator_and_wrong_factor_units_fail_the_goal() -> None:
    cases = qt.generate(4, seed=3)

    def calc_off_by_one(text: str) -> Any:
        return _Value(calculator.solve(text).value + 1, 0.0)

    def units_wrong_mile(text: str) -> Any:  # a converter whose mile is 1.6 km
        conv = units.solve(text)
        r = conv.result
        if conv.from_unit == "mi":
            r = r * 1.6 / 1.609344
        if conv.to_unit == "mi":
            r = r * 1.609344 / 1.6
        return _Value(0.0, r)

    out = qt.check(cases, calc_off_by_one, units_wrong_mile)
    assert out["exact_match"]["calculator"] == 0.0
    assert out["exact_match"]["units"] < 1.0
    assert out["goal_met"] == {"calculator": False, "units": False}
    assert out["failure_classes"]
    rows = qt.headline(out)
    assert [r.met for r in rows] == [False, False]


def test_reference_answers_meet_the_goal_and_the_real_calculator_too() -> None:
    cases = qt.generate(4, seed=3)
    oracle = _oracle(cases)
    out = qt.check(cases, oracle, oracle)
    assert out["goal_met"] == {"calculator": True, "units": True} and out["failures"] == 0
    real = qt.check([c for c in cases if c.tool == "calculator"], calculator.solve, units.solve)
    assert real["goal_met"]["calculator"], real["failure_examples"]
