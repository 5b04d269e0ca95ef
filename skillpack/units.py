"""Unit conversion across temperature, length, mass, pressure, volume, speed, energy, power,
area and time, with English and Chinese unit aliases, and extraction of value + from-unit +
to-unit from free text ("convert 37 °C to Fahrenheit", "100公里等于多少英里",
"how many psi is 2.5 bar").

``convert(value, from_unit, to_unit)`` and ``solve(text)`` return :class:`Conversion` or raise
:class:`skillpack.errors.UnitError` (HTTP 400) with a clear message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from skillpack.errors import UnitError
from skillpack.text import normalize_numbers


@dataclass(frozen=True)
class Unit:
    key: str  # canonical symbol
    dimension: str
    factor: float  # to the SI base of its dimension (temperature: see _to_kelvin)
    name: str
    aliases: tuple[str, ...]


def _u(key: str, dim: str, factor: float, name: str, *aliases: str) -> Unit:
    return Unit(key, dim, factor, name, (key, name, *aliases))


UNITS: tuple[Unit, ...] = (
    # temperature (factor unused; affine conversions)
    _u(
        "°C",
        "temperature",
        1.0,
        "degree Celsius",
        "c",
        "℃",
        "celsius",
        "degrees celsius",
        "degree celsius",
        "centigrade",
        "deg c",
        "degc",
        "摄氏度",
        "摄氏",
        "度",
    ),
    _u(
        "°F",
        "temperature",
        1.0,
        "degree Fahrenheit",
        "f",
        "℉",
        "fahrenheit",
        "degrees fahrenheit",
        "degree fahrenheit",
        "deg f",
        "degf",
        "华氏度",
        "华氏",
    ),
    _u("K", "temperature", 1.0, "kelvin", "kelvins", "开尔文", "开氏度", "开"),
    # length (m)
    _u("m", "length", 1.0, "metre", "meter", "meters", "metres", "米"),
    _u("km", "length", 1000.0, "kilometre", "kilometer", "kilometers", "kilometres", "kms", "公里", "千米"),
    _u("cm", "length", 0.01, "centimetre", "centimeter", "centimeters", "centimetres", "厘米", "公分"),
    _u("mm", "length", 0.001, "millimetre", "millimeter", "millimeters", "millimetres", "毫米"),
    _u("µm", "length", 1e-6, "micrometre", "micrometer", "micrometers", "micron", "microns", "um", "微米"),
    _u("mi", "length", 1609.344, "mile", "miles", "英里"),
    _u("ft", "length", 0.3048, "foot", "feet", "英尺", "呎"),
    _u("in", "length", 0.0254, "inch", "inches", "英寸", "吋"),
    _u("yd", "length", 0.9144, "yard", "yards", "码"),
    _u("nmi", "length", 1852.0, "nautical mile", "nautical miles", "海里"),
    # mass (kg)
    _u("kg", "mass", 1.0, "kilogram", "kilograms", "kilo", "kilos", "kgs", "公斤", "千克"),
    _u("g", "mass", 0.001, "gram", "grams", "gramme", "克"),
    _u("mg", "mass", 1e-6, "milligram", "milligrams", "毫克"),
    _u("t", "mass", 1000.0, "tonne", "tonnes", "metric ton", "metric tons", "吨", "公吨"),
    _u("lb", "mass", 0.45359237, "pound", "pounds", "lbs", "磅"),
    _u("oz", "mass", 0.028349523125, "ounce", "ounces", "盎司", "安士"),
    _u("jin", "mass", 0.5, "jin", "catty", "斤", "市斤"),
    # pressure (Pa)
    _u("Pa", "pressure", 1.0, "pascal", "pascals", "帕", "帕斯卡"),
    _u("kPa", "pressure", 1e3, "kilopascal", "kilopascals", "千帕"),
    _u("MPa", "pressure", 1e6, "megapascal", "megapascals", "兆帕"),
    _u("hPa", "pressure", 100.0, "hectopascal", "hectopascals", "百帕"),
    _u("bar", "pressure", 1e5, "bar", "bars", "巴"),
    _u("mbar", "pressure", 100.0, "millibar", "millibars", "毫巴"),
    _u("psi", "pressure", 6894.757293168, "pound per square inch", "pounds per square inch", "磅每平方英寸"),
    _u("atm", "pressure", 101325.0, "atmosphere", "atmospheres", "标准大气压", "大气压"),
    _u(
        "mmHg",
        "pressure",
        133.322387415,
        "millimetre of mercury",
        "millimeters of mercury",
        "torr",
        "毫米汞柱",
    ),
    # volume (m³)
    _u("L", "volume", 1e-3, "litre", "liter", "liters", "litres", "l", "升", "公升"),
    _u("mL", "volume", 1e-6, "millilitre", "milliliter", "milliliters", "millilitres", "ml", "毫升"),
    _u(
        "m³",
        "volume",
        1.0,
        "cubic metre",
        "cubic meter",
        "cubic meters",
        "cubic metres",
        "m3",
        "立方米",
        "方",
    ),
    _u("gal", "volume", 3.785411784e-3, "US gallon", "gallon", "gallons", "us gallons", "加仑"),
    _u("qt", "volume", 9.46352946e-4, "US quart", "quart", "quarts", "夸脱"),
    _u("pt", "volume", 4.73176473e-4, "US pint", "pint", "pints", "品脱"),
    _u("fl oz", "volume", 2.95735295625e-5, "US fluid ounce", "fluid ounce", "fluid ounces", "液量盎司"),
    _u("cup", "volume", 2.365882365e-4, "US cup", "cups", "量杯"),
    _u("tbsp", "volume", 1.478676478125e-5, "tablespoon", "tablespoons", "汤匙"),
    _u("tsp", "volume", 4.92892159375e-6, "teaspoon", "teaspoons", "茶匙"),
    _u("ft³", "volume", 0.028316846592, "cubic foot", "cubic feet", "ft3", "立方英尺"),
    # speed (m/s)
    _u(
        "m/s",
        "speed",
        1.0,
        "metre per second",
        "meters per second",
        "metres per second",
        "mps",
        "米每秒",
        "米/秒",
    ),
    _u(
        "km/h",
        "speed",
        1000.0 / 3600.0,
        "kilometre per hour",
        "kilometers per hour",
        "kilometres per hour",
        "kmh",
        "kph",
        "km/hr",
        "公里每小时",
        "千米每小时",
        "公里/小时",
        "千米/小时",
    ),
    _u(
        "mph",
        "speed",
        1609.344 / 3600.0,
        "mile per hour",
        "miles per hour",
        "mi/h",
        "英里每小时",
        "英里/小时",
    ),
    _u("kn", "speed", 1852.0 / 3600.0, "knot", "knots", "kt", "kts", "节"),
    _u("ft/s", "speed", 0.3048, "foot per second", "feet per second", "fps", "英尺每秒"),
    # energy (J)
    _u("J", "energy", 1.0, "joule", "joules", "焦耳", "焦"),
    _u("kJ", "energy", 1e3, "kilojoule", "kilojoules", "千焦", "千焦耳"),
    _u("MJ", "energy", 1e6, "megajoule", "megajoules", "兆焦", "兆焦耳"),
    _u("cal", "energy", 4.184, "calorie", "calories", "卡", "卡路里"),
    _u("kcal", "energy", 4184.0, "kilocalorie", "kilocalories", "千卡", "大卡"),
    _u("Wh", "energy", 3600.0, "watt-hour", "watt hour", "watt hours", "watt-hours", "瓦时"),
    _u(
        "kWh", "energy", 3.6e6, "kilowatt-hour", "kilowatt hour", "kilowatt hours", "kilowatt-hours", "千瓦时"
    ),
    _u("BTU", "energy", 1055.05585262, "British thermal unit", "btu", "btus", "英热单位"),
    # power (W)
    _u("W", "power", 1.0, "watt", "watts", "瓦", "瓦特"),
    _u("kW", "power", 1e3, "kilowatt", "kilowatts", "千瓦"),
    _u("MW", "power", 1e6, "megawatt", "megawatts", "兆瓦"),
    _u("hp", "power", 745.69987158227022, "horsepower", "mechanical horsepower", "马力"),
    # area (m²)
    _u(
        "m²",
        "area",
        1.0,
        "square metre",
        "square meter",
        "square meters",
        "square metres",
        "m2",
        "sqm",
        "平方米",
        "平米",
    ),
    _u(
        "km²",
        "area",
        1e6,
        "square kilometre",
        "square kilometer",
        "square kilometers",
        "km2",
        "平方公里",
        "平方千米",
    ),
    _u("ft²", "area", 0.09290304, "square foot", "square feet", "sq ft", "ft2", "平方英尺"),
    _u("ha", "area", 1e4, "hectare", "hectares", "公顷"),
    _u("acre", "area", 4046.8564224, "acre", "acres", "英亩"),
    _u("mu", "area", 10000.0 / 15.0, "mu", "亩"),
    # time (s)
    _u("s", "time", 1.0, "second", "seconds", "sec", "secs", "秒", "秒钟"),
    _u("ms", "time", 1e-3, "millisecond", "milliseconds", "msec", "毫秒"),
    _u("min", "time", 60.0, "minute", "minutes", "mins", "分钟", "分"),
    _u("h", "time", 3600.0, "hour", "hours", "hr", "hrs", "小时", "钟头"),
    _u("d", "time", 86400.0, "day", "days", "天", "日"),
    _u("wk", "time", 604800.0, "week", "weeks", "周", "星期", "礼拜"),
)

# Aliases that are only read as units right after a number (too ambiguous elsewhere).
_NUMBER_BOUND = {
    "c",
    "f",
    "k",
    "m",
    "g",
    "t",
    "l",
    "s",
    "h",
    "d",
    "in",
    "ft",
    "mi",
    "min",
    "度",
    "分",
    "日",
    "天",
    "周",
    "开",
    "方",
    "卡",
    "焦",
    "瓦",
    "节",
    "码",
    "巴",
    "帕",
    "克",
    "米",
    "升",
    "秒",
    "斤",
    "亩",
}


# what may stand right before an ambiguous short alias: a number ("5 m", "5°C"), an English target
# word ("to m", "in c", "how many ft"), or a Chinese target phrase ("等于多少秒", "换算成斤", "是几天")
_TARGET_BEFORE = re.compile(
    r"(?:\d\s*(?:°\s*)?|\b(?:to|in|into|as|many|much)\s+(?:°\s*)?|(?:多少|几|换算成|换算为|转换成|转换为|换成|"
    r"转成|折合|合)\s*)$"
)


def _build_index() -> dict[str, Unit]:
    index: dict[str, Unit] = {}
    for unit in UNITS:
        for alias in unit.aliases:
            key = alias.lower()
            if key in index and index[key] is not unit:
                raise RuntimeError(f"unit alias {alias!r} is ambiguous")
            index[key] = unit
    return index


_INDEX = _build_index()
_ALIASES_LONGEST_FIRST = sorted(_INDEX, key=len, reverse=True)


def find_unit(name: str) -> Unit:
    """Look a unit up by symbol, name or alias (EN/ZH, case-insensitive)."""
    key = name.strip().lower().replace("degrees ", "degrees ").replace("º", "°")
    key = re.sub(r"\s+", " ", key)
    if key in _INDEX:
        return _INDEX[key]
    if key.endswith("s") and key[:-1] in _INDEX:
        return _INDEX[key[:-1]]
    raise UnitError(f"unknown unit {name!r}")


def _to_kelvin(value: float, unit: Unit) -> float:
    if unit.key == "°C":
        return value + 273.15
    if unit.key == "°F":
        return (value - 32.0) * 5.0 / 9.0 + 273.15
    return value


def _from_kelvin(value: float, unit: Unit) -> float:
    if unit.key == "°C":
        return value - 273.15
    if unit.key == "°F":
        return (value - 273.15) * 9.0 / 5.0 + 32.0
    return value


@dataclass(frozen=True)
class Conversion:
    value: float
    from_unit: str
    to_unit: str
    result: float
    dimension: str

    @property
    def text(self) -> str:
        return f"{_fmt(self.value)} {self.from_unit} = {_fmt(self.result)} {self.to_unit}"

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "from_unit": self.from_unit,
            "to_unit": self.to_unit,
            "result": self.result,
            "dimension": self.dimension,
            "text": self.text,
        }


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if abs(x) >= 1e-4 else f"{x:.4g}"


def convert(value: float, from_unit: str | Unit, to_unit: str | Unit) -> Conversion:
    src = from_unit if isinstance(from_unit, Unit) else find_unit(from_unit)
    dst = to_unit if isinstance(to_unit, Unit) else find_unit(to_unit)
    if src.dimension != dst.dimension:
        raise UnitError(f"cannot convert {src.name} ({src.dimension}) to {dst.name} ({dst.dimension})")
    if not math.isfinite(value):
        raise UnitError("value must be a finite number")
    if src.dimension == "temperature":
        kelvin = _to_kelvin(value, src)
        if kelvin < -1e-9:
            raise UnitError(f"{_fmt(value)} {src.key} is below absolute zero")
        result = _from_kelvin(kelvin, dst)
    else:
        result = value * src.factor / dst.factor
    return Conversion(value, src.key, dst.key, float(f"{result:.12g}"), src.dimension)


# ----------------------------------------------------------------------------- extraction
_NUM_RE = re.compile(r"(?<![A-Za-z0-9_.])[-+]?(?:\d+\.\d+|\d+|\.\d+)")


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    unit: Unit


def _is_ascii_word(alias: str) -> bool:
    return alias.isascii()


def _unit_mentions(text: str) -> list[_Mention]:
    """Unit aliases in the text, longest match first, non-overlapping. ASCII aliases must sit on
    word boundaries; ambiguous short aliases only right after a number."""
    low = text.lower()
    taken = [False] * len(low)
    found: list[_Mention] = []
    for alias in _ALIASES_LONGEST_FIRST:
        start = 0
        while True:
            i = low.find(alias, start)
            if i < 0:
                break
            start = i + 1
            j = i + len(alias)
            if any(taken[i:j]):
                continue
            if _is_ascii_word(alias):
                before = low[i - 1] if i > 0 else " "
                after = low[j] if j < len(low) else " "
                if (before.isascii() and (before.isalpha() or before == "_")) or (
                    after.isascii() and after.isalnum()
                ):
                    continue
                if alias[0].isdigit() and before.isdigit():
                    continue
            if alias in _NUMBER_BOUND and not _TARGET_BEFORE.search(low[:i]):
                continue
            for k in range(i, j):
                taken[k] = True
            found.append(_Mention(i, j, _INDEX[alias]))
    return sorted(found, key=lambda m: m.start)


def solve(text: str) -> Conversion:
    """Extract value, from-unit and to-unit from a request and convert."""
    if not text or not text.strip():
        raise UnitError("empty request: nothing to convert")
    norm = normalize_numbers(text)
    norm = re.sub(r"°\s*([CcFf])\b", r"°\1", norm)
    numbers = list(_NUM_RE.finditer(norm))
    if not numbers:
        raise UnitError(f"no value to convert in {text[:80]!r}")
    mentions = _unit_mentions(norm)
    # "度" means Celsius only next to another temperature unit (else it may be kWh or an angle)
    if any(m.unit.key == "°C" and norm[m.start : m.end] == "度" for m in mentions) and not any(
        m.unit.dimension == "temperature" and norm[m.start : m.end] != "度" for m in mentions
    ):
        mentions = [m for m in mentions if norm[m.start : m.end] != "度"]
    if not mentions:
        raise UnitError(f"no unit found in {text[:80]!r}")
    # the from-unit is the mention right after a number; the to-unit is another mention
    for num in numbers:
        after = [
            m for m in mentions if 0 <= m.start - num.end() <= 2 and not norm[num.end() : m.start].strip("° ")
        ]
        if not after:
            continue
        src = after[0]
        others = [m for m in mentions if m is not src and m.unit.dimension == src.unit.dimension]
        if not others:
            dims = {m.unit.dimension for m in mentions if m is not src}
            if dims:
                other = next(m for m in mentions if m is not src)
                raise UnitError(
                    f"cannot convert {src.unit.name} ({src.unit.dimension}) to {other.unit.name} "
                    f"({other.unit.dimension})"
                )
            raise UnitError(f"no target unit for {num.group(0)} {src.unit.key} in {text[:80]!r}")
        dst = next((m for m in others if m.start > src.end), others[0])
        return convert(float(num.group(0)), src.unit, dst.unit)
    raise UnitError(f"no value with a unit in {text[:80]!r}")
