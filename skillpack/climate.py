"""Climate normals for major cities from the shipped data file (``data/climate_normals.json``,
approximate WMO 1991–2020 normals; see ``data/CLIMATE_SOURCES.md``).

``lookup(city, month=None, quantity="temperature")`` answers a structured query;
``solve(text)`` extracts city (EN/ZH names and aliases), month (January, Jan, 7月, 七月) and
quantity (temperature / precipitation, warmest / coldest / wettest / driest month) from text.
Both return :class:`ClimateAnswer`; an unknown city raises :class:`UnknownCity` (404).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from skillpack.errors import SkillError, UnknownCity
from skillpack.text import has_cjk, normalize_numbers

MONTHS_EN = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
QUANTITIES = ("temperature", "precipitation", "warmest", "coldest", "wettest", "driest", "summary")


@dataclass(frozen=True)
class CityNormals:
    id: str
    name: str
    name_zh: str
    aliases: tuple[str, ...]
    country: str
    source: str
    mean_temp_c: tuple[float, ...]
    precip_mm: tuple[float, ...]

    @property
    def annual_mean_temp_c(self) -> float:
        return round(sum(self.mean_temp_c) / 12.0, 1)

    @property
    def annual_precip_mm(self) -> float:
        return round(sum(self.precip_mm))


@dataclass(frozen=True)
class ClimateAnswer:
    city: str
    city_id: str
    quantity: str
    month: int | None
    value: float
    unit: str
    text: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "city": self.city,
            "city_id": self.city_id,
            "quantity": self.quantity,
            "month": self.month,
            "value": self.value,
            "unit": self.unit,
            "text": self.text,
            "source": self.source,
            **self.extra,
        }


@lru_cache(maxsize=1)
def load_normals() -> dict[str, CityNormals]:
    raw = json.loads(
        resources.files("skillpack").joinpath("data/climate_normals.json").read_text(encoding="utf-8")
    )
    out: dict[str, CityNormals] = {}
    for c in raw["cities"]:
        out[c["id"]] = CityNormals(
            c["id"],
            c["name"],
            c["name_zh"],
            tuple(c["aliases"]),
            c["country"],
            c["source"],
            tuple(c["mean_temp_c"]),
            tuple(c["precip_mm"]),
        )
    return out


@lru_cache(maxsize=1)
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for city in load_normals().values():
        for name in (city.id.replace("_", " "), city.name, city.name_zh, *city.aliases):
            index[name.lower()] = city.id
    return index


def find_city(name: str) -> CityNormals:
    key = name.strip().lower()
    city_id = _alias_index().get(key) or _alias_index().get(re.sub(r"(市|city)$", "", key).strip())
    if city_id is None:
        known = ", ".join(sorted(c.name for c in load_normals().values()))
        raise UnknownCity(f"no climate normals for {name!r}; known cities: {known}")
    return load_normals()[city_id]


def find_city_in_text(text: str) -> CityNormals | None:
    low = text.lower()
    for alias in sorted(_alias_index(), key=len, reverse=True):
        i = low.find(alias)
        if i < 0:
            continue
        if alias.isascii():
            before = low[i - 1] if i else " "
            after = low[i + len(alias)] if i + len(alias) < len(low) else " "
            if before.isalnum() or after.isalnum():
                continue
        return load_normals()[_alias_index()[alias]]
    return None


def find_month(text: str) -> int | None:
    low = normalize_numbers(text).lower()
    m = re.search(r"(1[0-2]|0?[1-9])\s*月", low)
    if m:
        return int(m.group(1))
    for i, name in enumerate(MONTHS_EN):
        if re.search(rf"\b(?:{name}|{name[:3]}\.?)(?![a-z])", low) and not (
            name == "may" and re.search(r"\bmay\s+(?:i|you|we)\b", low)
        ):
            return i + 1
    return None


_Q_PATTERNS: list[tuple[str, str]] = [
    ("warmest", r"warmest|hottest|最热|最暖"),
    ("coldest", r"coldest|最冷"),
    ("wettest", r"wettest|rainiest|most rain|雨最多|降水最多|最潮湿"),
    ("driest", r"driest|least rain|最干|降水最少|雨最少"),
    ("precipitation", r"rain|precipitation|snow|wet|雨|降水|降雪|雨量"),
    ("temperature", r"temperature|temp\b|warm|cold|hot|cool|degrees|气温|温度|冷|热|暖"),
]


def find_quantity(text: str) -> str:
    low = text.lower()
    for quantity, pattern in _Q_PATTERNS:
        if re.search(pattern, low):
            return quantity
    return "summary"


def _m_en(month: int) -> str:
    return MONTHS_EN[month - 1].capitalize()


def lookup(
    city: str | CityNormals, month: int | None = None, quantity: str = "temperature", *, zh: bool = False
) -> ClimateAnswer:
    c = city if isinstance(city, CityNormals) else find_city(city)
    if month is not None and not 1 <= month <= 12:
        raise SkillError(f"month must be 1..12, got {month}")
    if quantity not in QUANTITIES:
        raise SkillError(f"quantity must be one of {', '.join(QUANTITIES)}")
    name = c.name_zh if zh else c.name
    tail_en = " (1991–2020 normal, approximate)"
    tail_zh = "（1991–2020年气候平均值，近似）"
    extra: dict[str, Any] = {}
    if quantity in ("warmest", "coldest", "wettest", "driest"):
        series = c.mean_temp_c if quantity in ("warmest", "coldest") else c.precip_mm
        pick = max if quantity in ("warmest", "wettest") else min
        m = series.index(pick(series)) + 1
        value = series[m - 1]
        unit = "°C" if quantity in ("warmest", "coldest") else "mm"
        label_zh = {
            "warmest": "最热的月份",
            "coldest": "最冷的月份",
            "wettest": "降水最多的月份",
            "driest": "降水最少的月份",
        }[quantity]
        text = (
            f"{name}{label_zh}是{m}月（{value:g} {unit}）{tail_zh}"
            if zh
            else f"The {quantity} month in {name} is {_m_en(m)} ({value:g} {unit}){tail_en}."
        )
        return ClimateAnswer(c.name, c.id, quantity, m, value, unit, text, c.source)
    if quantity == "summary":
        if month is None:
            value = c.annual_mean_temp_c
            text = (
                f"{name}年平均气温约{value:g}°C，年降水量约{c.annual_precip_mm:g}毫米{tail_zh}"
                if zh
                else f"{name}: annual mean temperature about {value:g} °C, annual precipitation about "
                f"{c.annual_precip_mm:g} mm{tail_en}."
            )
            extra["annual_precip_mm"] = c.annual_precip_mm
            return ClimateAnswer(c.name, c.id, "summary", None, value, "°C", text, c.source, extra)
        t, p = c.mean_temp_c[month - 1], c.precip_mm[month - 1]
        text = (
            f"{name}{month}月平均气温约{t:g}°C，降水量约{p:g}毫米{tail_zh}"
            if zh
            else f"{name} in {_m_en(month)}: mean temperature about {t:g} °C, "
            f"precipitation about {p:g} mm{tail_en}."
        )
        extra["precip_mm"] = p
        return ClimateAnswer(c.name, c.id, "summary", month, t, "°C", text, c.source, extra)
    if quantity == "temperature":
        value = c.annual_mean_temp_c if month is None else c.mean_temp_c[month - 1]
        when_zh, when_en = (
            ("全年", "over the year") if month is None else (f"{month}月", f"in {_m_en(month)}")
        )
        text = (
            f"{name}{when_zh}平均气温约{value:g}°C{tail_zh}"
            if zh
            else f"The mean temperature in {name} {when_en} is about {value:g} °C{tail_en}."
        )
        return ClimateAnswer(c.name, c.id, "temperature", month, value, "°C", text, c.source)
    value = c.annual_precip_mm if month is None else c.precip_mm[month - 1]
    when_zh, when_en = ("全年", "in a year") if month is None else (f"{month}月", f"in {_m_en(month)}")
    text = (
        f"{name}{when_zh}平均降水量约{value:g}毫米{tail_zh}"
        if zh
        else f"{name} gets about {value:g} mm of precipitation {when_en} on average{tail_en}."
    )
    return ClimateAnswer(c.name, c.id, "precipitation", month, value, "mm", text, c.source)


def solve(text: str) -> ClimateAnswer:
    """Answer a climate question in English or Chinese from the shipped normals."""
    if not text or not text.strip():
        raise SkillError("empty request: which city?")
    city = find_city_in_text(text)
    if city is None:
        raise UnknownCity(
            f"no known city in {text[:80]!r}; the climate skill knows {len(load_normals())} major cities"
        )
    return lookup(city, find_month(text), find_quantity(text), zh=has_cjk(text))
