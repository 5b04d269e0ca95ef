from __future__ import annotations

import pytest

from skillpack import climate
from skillpack.errors import UnknownCity


def test_data_file_is_complete_and_plausible() -> None:
    normals = climate.load_normals()
    assert len(normals) >= 40
    assert sum(c.country == "CN" for c in normals.values()) >= 15
    for c in normals.values():
        assert len(c.mean_temp_c) == 12 and len(c.precip_mm) == 12
        assert all(-40 < t < 45 for t in c.mean_temp_c), c.id
        assert all(0 <= p < 1500 for p in c.precip_mm), c.id
        assert c.name_zh and c.source
    # hemispheres: Sydney's January is warmer than its July, Beijing's the opposite
    assert normals["sydney"].mean_temp_c[0] > normals["sydney"].mean_temp_c[6]
    assert normals["beijing"].mean_temp_c[0] < normals["beijing"].mean_temp_c[6]


@pytest.mark.parametrize(
    ("text", "city", "quantity", "month"),
    [
        ("What is the average temperature in Beijing in July?", "beijing", "temperature", 7),
        ("上海七月的平均气温是多少", "shanghai", "temperature", 7),
        ("How much rain does London get in October?", "london", "precipitation", 10),
        ("东京哪个月最热", "tokyo", "warmest", 8),
        ("What's the coldest month in Harbin?", "harbin", "coldest", 1),
        ("成都一年的降水量", "chengdu", "precipitation", None),
        ("Hong Kong precipitation in Jun", "hong_kong", "precipitation", 6),
        ("Tell me about the climate of Singapore", "singapore", "summary", None),
    ],
)
def test_solve_extracts_city_month_quantity(text: str, city: str, quantity: str, month: int | None) -> None:
    ans = climate.solve(text)
    assert (ans.city_id, ans.quantity, ans.month) == (city, quantity, month)
    assert "approximate" in ans.text or "近似" in ans.text


def test_lookup_values_come_from_the_file() -> None:
    ans = climate.lookup("北京", 7, "temperature")
    assert ans.value == climate.load_normals()["beijing"].mean_temp_c[6]
    assert climate.lookup("Peking").city_id == "beijing"
    assert climate.lookup("hong kong", 6, "precipitation").unit == "mm"


def test_unknown_city_is_404_with_message() -> None:
    with pytest.raises(UnknownCity, match="no known city") as info:
        climate.solve("What's the weather like in Atlantis?")
    assert info.value.status == 404
    with pytest.raises(UnknownCity):
        climate.lookup("Gotham")
