from __future__ import annotations

import pytest

from skillpack.devices import DeviceStore
from skillpack.errors import ControlRefused, SkillError, UnknownDevice
from skillpack.kg.graph import default_graph


@pytest.fixture()
def store() -> DeviceStore:
    return DeviceStore.from_graph(default_graph(), "site:suzhou")


def test_seeded_from_the_site_machines(store: DeviceStore) -> None:
    ids = store.ids()
    assert len(ids) == 20 and all(i.endswith(tuple("12345")) for i in ids)
    oven = store.status("OV-122")
    assert oven["kind"] == "oven" and "temperature" in oven["readings"]
    assert store.status("ov122")["id"] == "OV-122"
    with pytest.raises(UnknownDevice):
        store.status("OV-999")


@pytest.mark.parametrize(
    ("text", "device", "action", "value"),
    [
        ("set OV-122 to 180 °C", "OV-122", "set_temperature", 180.0),
        ("把OV-122的温度设为一百九十度", "OV-122", "set_temperature", 190.0),
        ("set the speed of CV-114 to 30", "CV-114", "set_speed", 30.0),
        ("stop conveyor CV-114", "CV-114", "stop", None),
        ("停止CV-114", "CV-114", "stop", None),
        ("启动 cv114", "CV-114", "start", None),
        ("turn on the compressor CP-115", "CP-115", "start", None),
    ],
)
def test_parse_control_requests(
    store: DeviceStore, text: str, device: str, action: str, value: float | None
) -> None:
    req = store.parse_control_request(text)
    assert (req.device, req.action, req.value) == (device, action, value)


def test_parse_status_requests(store: DeviceStore) -> None:
    assert store.parse_status_request("What's the temperature of OV-122?").reading == "temperature"
    assert store.parse_status_request("PR-111的压力是多少").reading == "pressure"
    req = store.parse_status_request("how is CV-114 doing")
    assert req.device == "CV-114" and req.reading is None
    with pytest.raises(UnknownDevice):
        store.parse_status_request("how is the coffee machine")


def test_control_needs_allow_list_window_and_confirmation(store: DeviceStore) -> None:
    with pytest.raises(ControlRefused) as info:
        store.control("OV-122", "set_temperature", 190.0)
    assert info.value.reason == "not_confirmed" and info.value.status == 403
    assert store.status("OV-122")["setpoints"]["temperature"] == 180.0  # unchanged
    with pytest.raises(ControlRefused) as info:
        store.control("OV-122", "set_temperature", 300.0, confirm=True)
    assert info.value.reason == "out_of_range"
    with pytest.raises(ControlRefused) as info:
        store.control("PR-111", "stop", confirm=True)
    assert info.value.reason == "not_allowed"
    result = store.control("OV-122", "set_temperature", 190.0, confirm=True)
    assert result.previous["setpoints"]["temperature"] == 180.0
    assert store.status("OV-122")["setpoints"]["temperature"] == 190.0
    store.control("CV-114", "stop", confirm=True)
    assert store.status("CV-114")["state"] == "stopped"


def test_node_allow_list_narrows_the_defaults() -> None:
    store = DeviceStore.from_graph(default_graph(), "site:suzhou", allow={"CV-114:stop"})
    store.control("CV-114", "stop", confirm=True)
    with pytest.raises(ControlRefused, match="not allowed"):
        store.control("CV-114", "start", confirm=True)
    with pytest.raises(ControlRefused):
        store.control("CV-124", "stop", confirm=True)


def test_readings_and_alarms_update(store: DeviceStore) -> None:
    store.update_reading("OV-122", "temperature", 231.5)
    store.raise_alarm("OV-122", "E101", "oven over-temperature")
    doc = store.status("OV-122", "temperature")
    assert doc["reading"]["value"] == 231.5 and doc["alarms"][0]["code"] == "E101"
    store.clear_alarm("OV-122", "E101")
    assert store.status("OV-122")["alarms"] == []
    with pytest.raises(SkillError):
        store.status("OV-122", "flow")
