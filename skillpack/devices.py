"""Device-twin state store of an edge node's devices: readings, run state and alarms per device,
and guarded control.

- :class:`DeviceStore` holds one :class:`DeviceTwin` per device (thread-safe); ``from_graph`` seeds
  the twins of a site's machines from the plant graph with deterministic simulated readings.
- ``status(ref)`` answers readings/state/alarms; ``control(ref, action, value, confirm=...)``
  changes state only when the action is on the allow-list (per device kind, optionally narrowed
  by the node's configuration), the value is inside the allowed window and ``confirm`` is true —
  otherwise :class:`ControlRefused` (403) with a ``reason``. Safety functions are never listed.
- ``parse_status_request`` / ``parse_control_request`` extract device, reading, action and value
  from English or Chinese text ("set OV-122 to 180 °C", "把CV-113停下来", "PR-111的压力是多少").
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from skillpack.errors import ControlRefused, SkillError, UnknownDevice
from skillpack.text import normalize_numbers, to_ascii

READING_NAMES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # reading: (unit, EN words, ZH words)
    "temperature": ("°C", ("temperature", "temp", "hot", "warm"), ("温度", "多热")),
    "pressure": ("bar", ("pressure",), ("压力", "气压", "油压")),
    "vibration": ("mm/s", ("vibration", "vibrating", "shaking"), ("振动", "震动")),
    "current": ("A", ("current", "amps", "amperage", "load"), ("电流", "负载")),
    "flow": ("L/min", ("flow",), ("流量",)),
    "speed": ("m/min", ("speed", "how fast"), ("速度",)),
}
# kind -> {action: (min, max, unit) or None for actions without a value}
DEFAULT_ACTIONS: dict[str, dict[str, tuple[float, float, str] | None]] = {
    "conveyor": {"start": None, "stop": None, "set_speed": (5.0, 60.0, "m/min")},
    "oven": {"start": None, "stop": None, "set_temperature": (140.0, 220.0, "°C")},
    "chiller": {"start": None, "stop": None, "set_temperature": (5.0, 20.0, "°C")},
    "compressor": {"start": None, "stop": None},
    "cnc": {"stop": None},
    "robot": {},  # robot motion is never commanded remotely
    "press": {},  # presses are never commanded remotely
}
ACTION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "start": (
        ("start", "turn on", "switch on", "power on", "resume", "run"),
        ("启动", "开启", "打开", "开机", "运行"),
    ),
    "stop": (
        ("stop", "turn off", "switch off", "shut down", "shutdown", "halt", "pause"),
        ("停止", "关闭", "关掉", "停机", "停下", "暂停", "关机"),
    ),
    "set": (
        ("set", "change", "adjust", "raise", "lower", "increase", "decrease"),
        ("设置", "设为", "设定", "调到", "调整", "调为", "改为", "调"),
    ),
}
_CODE_RE = re.compile(r"(?<![A-Za-z])([A-Za-z]{2})[\s_-]?(\d{3,4})(?!\d)")


@dataclass
class Reading:
    value: float
    unit: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "ts": self.ts}


@dataclass
class Alarm:
    code: str
    message: str
    since: float

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "since": self.since}


@dataclass
class DeviceTwin:
    id: str
    name: str
    name_zh: str
    kind: str
    line: str = ""
    state: str = "running"
    readings: dict[str, Reading] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    setpoints: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "name_zh": self.name_zh,
            "kind": self.kind,
            "line": self.line,
            "state": self.state,
            "readings": {k: r.to_dict() for k, r in self.readings.items()},
            "alarms": [a.to_dict() for a in self.alarms],
            "setpoints": dict(self.setpoints),
            "updated": self.updated,
        }


@dataclass(frozen=True)
class ControlResult:
    device: str
    action: str
    value: float | None
    previous: dict[str, Any]
    current: dict[str, Any]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "action": self.action,
            "value": self.value,
            "previous": self.previous,
            "current": self.current,
            "text": self.text,
        }


@dataclass(frozen=True)
class StatusRequest:
    device: str
    reading: str | None


@dataclass(frozen=True)
class ControlRequest:
    device: str
    action: str  # start | stop | set_<reading>
    value: float | None


class DeviceStore:
    """Thread-safe twin store. ``allow`` narrows control to ``{"device_id:action", "kind:action"}``
    entries (``None``: the per-kind defaults)."""

    def __init__(self, twins: list[DeviceTwin] | None = None, allow: set[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._twins: dict[str, DeviceTwin] = {}
        self._alias: dict[str, str] = {}
        self.allow = allow
        for t in twins or []:
            self.add(t)

    def add(self, twin: DeviceTwin) -> None:
        with self._lock:
            self._twins[twin.id] = twin
            for a in (twin.id, twin.name, twin.name_zh, *twin.aliases):
                self._alias[a.lower()] = twin.id

    def ids(self) -> list[str]:
        return sorted(self._twins)

    def resolve(self, ref: str) -> DeviceTwin:
        key = ref.strip().lower()
        m = _CODE_RE.fullmatch(ref.strip())
        if m:
            key = f"{m.group(1)}-{m.group(2)}".lower()
        did = self._alias.get(key)
        if did is None:
            raise UnknownDevice(f"no device {ref!r} on this node (known: {', '.join(self.ids()[:12])}…)")
        return self._twins[did]

    # ------------------------------------------------------------------ reads and writes
    def status(self, ref: str, reading: str | None = None) -> dict[str, Any]:
        twin = self.resolve(ref)
        with self._lock:
            doc = twin.to_dict()
        if reading is not None:
            if reading not in twin.readings:
                raise SkillError(
                    f"{twin.id} reports no {reading} (it reports {', '.join(sorted(twin.readings))})"
                )
            doc["reading"] = {"name": reading, **twin.readings[reading].to_dict()}
        return doc

    def update_reading(
        self, ref: str, name: str, value: float, unit: str | None = None, ts: float | None = None
    ) -> None:
        twin = self.resolve(ref)
        with self._lock:
            old = twin.readings.get(name)
            twin.readings[name] = Reading(
                float(value),
                unit or (old.unit if old else READING_NAMES.get(name, ("",))[0]),
                ts if ts is not None else time.time(),
            )
            twin.updated = time.time()

    def raise_alarm(self, ref: str, code: str, message: str) -> None:
        twin = self.resolve(ref)
        with self._lock:
            if all(a.code != code for a in twin.alarms):
                twin.alarms.append(Alarm(code, message, time.time()))
            twin.updated = time.time()

    def clear_alarm(self, ref: str, code: str) -> None:
        twin = self.resolve(ref)
        with self._lock:
            twin.alarms = [a for a in twin.alarms if a.code != code]

    def allowed_actions(self, twin: DeviceTwin) -> dict[str, tuple[float, float, str] | None]:
        actions = DEFAULT_ACTIONS.get(twin.kind, {})
        if self.allow is None:
            return dict(actions)
        return {
            a: spec
            for a, spec in actions.items()
            if f"{twin.id}:{a}" in self.allow or f"{twin.kind}:{a}" in self.allow
        }

    def control(
        self, ref: str, action: str, value: float | None = None, *, confirm: bool = False
    ) -> ControlResult:
        twin = self.resolve(ref)
        allowed = self.allowed_actions(twin)
        if action not in allowed:
            raise ControlRefused(
                f"{action} is not allowed on {twin.id} ({twin.kind}); "
                f"allowed: {', '.join(sorted(allowed)) or 'nothing'}",
                reason="not_allowed",
            )
        spec = allowed[action]
        if spec is not None:
            if value is None:
                raise ControlRefused(
                    f"{action} on {twin.id} needs a value ({spec[0]:g}–{spec[1]:g} {spec[2]})",
                    reason="missing_value",
                )
            if not spec[0] <= value <= spec[1]:
                raise ControlRefused(
                    f"{value:g} {spec[2]} is outside the allowed window {spec[0]:g}–{spec[1]:g} {spec[2]} "
                    f"for {twin.id}",
                    reason="out_of_range",
                )
        if not confirm:
            what = f"{action} {twin.id}" + (f" to {value:g} {spec[2]}" if spec and value is not None else "")
            raise ControlRefused(
                f"{what} needs an explicit confirmation (confirm=true)", reason="not_confirmed"
            )
        with self._lock:
            previous = {"state": twin.state, "setpoints": dict(twin.setpoints)}
            if action == "start":
                twin.state = "running"
            elif action == "stop":
                twin.state = "stopped"
            else:
                assert value is not None
                twin.setpoints[action.removeprefix("set_")] = float(value)
            twin.updated = time.time()
            current = {"state": twin.state, "setpoints": dict(twin.setpoints)}
        text = (
            f"{twin.id}: {action}"
            + (f" → {value:g} {spec[2]}" if spec and value is not None else "")
            + f" (state {twin.state})"
        )
        return ControlResult(twin.id, action, value, previous, current, text)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [t.to_dict() for t in self._twins.values()]

    # ------------------------------------------------------------------ seeding
    @classmethod
    def from_graph(
        cls, graph: Any, site_id: str | None = None, seed: int = 11, allow: set[str] | None = None
    ) -> DeviceStore:
        """Twins for the machines of ``site_id`` (all sites when None) of a ``KnowledgeGraph``."""
        rng = random.Random(seed)
        twins: list[DeviceTwin] = []
        now = time.time()
        for e in sorted(graph.of_type("machine"), key=lambda e: e.id):
            line = graph.neighbors(e.id, "located_on_line")[0]
            if site_id and graph.neighbors(line, "line_of_site") != [site_id]:
                continue
            readings: dict[str, Reading] = {}
            for sid in graph.neighbors(e.id, "has_sensor"):
                s = graph.entities[sid]
                kind = s.attrs.get("kind", "temperature")
                base = {
                    "temperature": 45.0,
                    "pressure": 190.0,
                    "vibration": 2.0,
                    "current": 12.0,
                    "flow": 35.0,
                }[kind]
                if e.attrs.get("kind") == "oven" and kind == "temperature":
                    base = 180.0
                if e.attrs.get("kind") == "compressor" and kind == "pressure":
                    base = 7.5
                if e.attrs.get("kind") == "chiller" and kind == "temperature":
                    base = 12.0
                readings[kind] = Reading(
                    round(base * (1 + rng.uniform(-0.05, 0.05)), 2), s.attrs.get("unit", ""), now
                )
            kind = str(e.attrs.get("kind", "machine"))
            setpoints = (
                {"temperature": 180.0} if kind == "oven" else {"speed": 20.0} if kind == "conveyor" else {}
            )
            twins.append(
                DeviceTwin(
                    e.attrs.get("code", e.id.split(":")[-1]),
                    e.name,
                    e.name_zh,
                    kind,
                    graph.entities[line].name,
                    "running",
                    readings,
                    [],
                    setpoints,
                    tuple(e.aliases),
                    now,
                )
            )
        return cls(twins, allow)

    # ------------------------------------------------------------------ text
    def find_device(self, text: str) -> DeviceTwin:
        norm = to_ascii(text)
        for m in _CODE_RE.finditer(norm):
            code = f"{m.group(1).upper()}-{m.group(2)}"
            if code.lower() in self._alias:
                return self._twins[self._alias[code.lower()]]
        low = norm.lower()
        for alias in sorted(self._alias, key=len, reverse=True):
            if len(alias) >= 3 and alias in low:
                return self._twins[self._alias[alias]]
        raise UnknownDevice(f"no device of this node named in {text[:80]!r}")

    def parse_status_request(self, text: str) -> StatusRequest:
        twin = self.find_device(text)
        low = to_ascii(text).lower()
        reading = None
        for name, (_, en, zh) in READING_NAMES.items():
            if any(re.search(rf"\b{re.escape(w)}", low) for w in en) or any(w in low for w in zh):
                reading = name
                break
        return StatusRequest(twin.id, reading)

    def parse_control_request(self, text: str) -> ControlRequest:
        twin = self.find_device(text)
        norm = normalize_numbers(to_ascii(text))
        low = norm.lower()
        found: list[tuple[int, str]] = []
        for action, (en, zh) in ACTION_WORDS.items():
            for w in en:
                m = re.search(rf"\b{re.escape(w)}\b", low)
                if m:
                    found.append((m.start(), action))
            for w in zh:
                i = low.find(w)
                if i >= 0:
                    found.append((i, action))
        without_codes = _CODE_RE.sub(
            lambda m: " " if f"{m.group(1)}-{m.group(2)}".lower() in self._alias else m.group(0), norm
        )
        numbers = [float(x) for x in re.findall(r"(?<![A-Za-z\d.-])-?\d+(?:\.\d+)?(?![\d-])", without_codes)]
        if not found and numbers:
            found.append((0, "set"))
        if not found:
            raise SkillError(f"no command (start, stop, set …) found in {text[:80]!r}")
        action = min(found)[1]
        if action == "set":
            reading = next(
                (
                    name
                    for name, (_, en, zh) in READING_NAMES.items()
                    if any(re.search(rf"\b{re.escape(w)}", low) for w in en) or any(w in low for w in zh)
                ),
                None,
            )
            if reading is None:
                settable = [
                    a.removeprefix("set_") for a in DEFAULT_ACTIONS.get(twin.kind, {}) if a.startswith("set_")
                ]
                reading = settable[0] if settable else "value"
            if not numbers:
                raise SkillError(f"set what value? no number in {text[:80]!r}")
            return ControlRequest(twin.id, f"set_{reading}", numbers[-1])
        return ControlRequest(twin.id, action, None)
