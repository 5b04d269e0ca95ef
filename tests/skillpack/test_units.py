from __future__ import annotations

import pytest

from skillpack import units
from skillpack.errors import UnitError


@pytest.mark.parametrize(
    ("text", "from_unit", "to_unit", "result"),
    [
        ("convert 37 °C to Fahrenheit", "°C", "°F", 98.6),
        ("What is 98.6 F in C?", "°F", "°C", 37.0),
        ("把37摄氏度换算成华氏度", "°C", "°F", 98.6),
        ("三十度是多少华氏度", "°C", "°F", 86.0),
        ("300 K to celsius", "K", "°C", 26.85),
        ("100公里等于多少英里", "km", "mi", 62.1371192),
        ("10 miles to km", "mi", "km", 16.09344),
        ("5 feet in cm", "ft", "cm", 152.4),
        ("How many inches in 2 feet?", "ft", "in", 24.0),
        ("How many pounds are in 5 kilograms?", "kg", "lb", 11.0231131),
        ("一百磅是多少公斤", "lb", "kg", 45.359237),
        ("十五公斤等于多少磅", "kg", "lb", 33.0693393),
        ("how many psi is 2.5 bar", "bar", "psi", 36.2594344),
        ("2.5巴等于多少psi", "bar", "psi", 36.2594344),
        ("1 atm to kPa", "atm", "kPa", 101.325),
        ("how many liters is 3 gallons", "gal", "L", 11.3562354),
        ("convert 60 mph to km/h", "mph", "km/h", 96.56064),
        ("20 m/s in km/h", "m/s", "km/h", 72.0),
        ("1 kWh in joules", "kWh", "J", 3.6e6),
        ("How many minutes in 2.5 hours?", "h", "min", 150.0),
        ("72 hours in days", "h", "d", 3.0),
        ("200 hp in kW", "hp", "kW", 149.139974),
    ],
)
def test_solve_extracts_value_and_units(text: str, from_unit: str, to_unit: str, result: float) -> None:
    conv = units.solve(text)
    assert (conv.from_unit, conv.to_unit) == (from_unit, to_unit)
    assert conv.result == pytest.approx(result, rel=1e-6)


def test_round_trip_every_unit_in_each_dimension() -> None:
    by_dim: dict[str, list[units.Unit]] = {}
    for u in units.UNITS:
        by_dim.setdefault(u.dimension, []).append(u)
    assert set(by_dim) >= {"temperature", "length", "mass", "pressure", "volume", "speed", "energy", "time"}
    for group in by_dim.values():
        for a in group:
            for b in group:
                there = units.convert(12.5, a, b).result
                assert units.convert(there, b, a).result == pytest.approx(12.5, rel=1e-6)


def test_aliases_in_both_languages() -> None:
    assert units.find_unit("摄氏度").key == "°C"
    assert units.find_unit("华氏度").key == "°F"
    assert units.find_unit("公斤").key == units.find_unit("kilograms").key == "kg"
    assert units.find_unit("PSI").key == "psi"
    assert units.find_unit("巴").key == "bar"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("5 kg to meters", "cannot convert"),
        ("-300 C to K", "absolute zero"),
        ("convert to fahrenheit", "no value"),
        ("what is 5 to 7", "no unit"),
        ("", "empty"),
    ],
)
def test_bad_requests_say_why(text: str, match: str) -> None:
    with pytest.raises(UnitError, match=match):
        units.solve(text)


def test_unknown_unit() -> None:
    with pytest.raises(UnitError, match="unknown unit"):
        units.convert(1, "furlongs-per-fortnight", "m/s")


@pytest.mark.parametrize(
    ("text", "src", "dst", "value"),
    [
        # a one-character Chinese unit as the target after 多少 / 换算成
        # (found by benchmarks/quality_tools.py)
        ("3765公顷是多少亩", "ha", "mu", 3765),
        ("2364.9分钟等于多少秒", "min", "s", 2364.9),
        ("把5公斤换算成斤", "kg", "jin", 5),
        ("30节等于多少米每秒", "kn", "m/s", 30),
        # Chinese number words before a unit that starts with 千 / 百 (千焦, 千瓦时, 千帕, 千克)
        ("一千六百七十九千焦是多少焦耳", "kJ", "J", 1679),
        ("四百八十一千帕等于多少兆帕", "kPa", "MPa", 481),
        ("两千一百九十五千瓦时换算成千焦", "kWh", "kJ", 2195),
        ("三千米是多少公里", "m", "km", 3000),  # 三千米 stays 3000 m
        ("how many ft is 3080 cm?", "cm", "ft", 3080),
        ("一千一百九十分钟是多少小时", "min", "h", 1190),  # 十分 here is no idiom
    ],
)
def test_chinese_targets_and_number_words_before_prefixed_units(
    text: str, src: str, dst: str, value: float
) -> None:
    conv = units.solve(text)
    assert (conv.from_unit, conv.to_unit, conv.value) == (src, dst, value)
