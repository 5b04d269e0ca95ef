"""Tools that run on the node: calculator, unit conversion, device status/control over the
device-twin store, memory recall over the session, chitchat — and the knowledge-graph reasoner
(its own source). Each returns a :class:`ToolOutcome` whose ``args``/``data`` go into the steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.agent.memory import Session
from skillpack import calculator, units
from skillpack.devices import DeviceStore
from skillpack.errors import ControlRefused
from skillpack.text import has_cjk


@dataclass
class ToolOutcome:
    tool: str
    answer: str
    args: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # reason, when a command was refused


class LocalTools:
    ROUTES = ("calculator", "unit_convert", "device_status", "device_control", "memory_recall", "chitchat")

    def __init__(self, devices: DeviceStore) -> None:
        self.devices = devices

    def handles(self, route: str) -> bool:
        return route in self.ROUTES

    def run(self, route: str, text: str, session: Session | None, *, confirm: bool = False) -> ToolOutcome:
        if route == "calculator":
            r = calculator.solve(text)
            return ToolOutcome("calculator", r.text, {"expression": r.expression}, r.to_dict())
        if route == "unit_convert":
            c = units.solve(text)
            return ToolOutcome(
                "unit_convert",
                c.text,
                {"value": c.value, "from_unit": c.from_unit, "to_unit": c.to_unit},
                c.to_dict(),
            )
        if route == "device_status":
            req = self.devices.parse_status_request(text)
            doc = self.devices.status(req.device, req.reading)
            return ToolOutcome(
                "device_status",
                _status_text(doc, req.reading, has_cjk(text)),
                {"device": req.device, "reading": req.reading},
                doc,
            )
        if route == "device_control":
            creq = self.devices.parse_control_request(text)
            args = {"device": creq.device, "action": creq.action, "value": creq.value, "confirm": confirm}
            try:
                res = self.devices.control(creq.device, creq.action, creq.value, confirm=confirm)
            except ControlRefused as exc:
                zh = has_cjk(text)
                msg = f"未执行：{exc.message}" if zh else f"Not done: {exc.message}"
                return ToolOutcome("device_control", msg, args, {"refused": exc.reason}, refused=exc.reason)
            return ToolOutcome("device_control", res.text, args, res.to_dict())
        if route == "memory_recall":
            return _recall(text, session)
        if route == "chitchat":
            zh = has_cjk(text)
            msg = (
                "你好！我是工厂边缘助手，可以计算、换算单位、查询设备状态、回答工厂组织和设备的问题。"
                if zh
                else "Hello! I am the plant's edge assistant: I can calculate, convert units, "
                "report device status and answer questions about the plant's people, lines and machines."
            )
            return ToolOutcome("chitchat", msg)
        raise ValueError(f"route {route!r} has no local tool")


def _status_text(doc: dict[str, Any], reading: str | None, zh: bool) -> str:
    alarms = ", ".join(a["code"] for a in doc.get("alarms", []))
    if reading is not None:
        r = doc["reading"]
        text = (
            f"{doc['id']} 的{reading}读数为 {r['value']:g} {r['unit']}"
            if zh
            else f"{doc['id']} {reading}: {r['value']:g} {r['unit']}"
        )
    else:
        vals = ", ".join(f"{k} {v['value']:g} {v['unit']}" for k, v in doc.get("readings", {}).items())
        text = (
            f"{doc['id']} 状态 {doc['state']}（{vals}）" if zh else f"{doc['id']} is {doc['state']} ({vals})"
        )
    if alarms:
        text += f"; 报警 {alarms}" if zh else f"; alarms: {alarms}"
    return text


def _recall(text: str, session: Session | None) -> ToolOutcome:
    zh = has_cjk(text)
    turns = list(session.turns) if session is not None else []
    if not turns:
        return ToolOutcome(
            "memory_recall",
            "这次对话里还没有之前的问题。" if zh else "There is no earlier question in this conversation.",
        )
    last = turns[-1]
    wants_answer = any(w in text.lower() for w in ("answer", "say", "said", "repeat", "答案", "说"))
    if wants_answer:
        msg = f"我刚才的回答是：{last.answer}" if zh else f"My last answer was: {last.answer}"
    else:
        msg = f"你刚才问的是：{last.question}" if zh else f"You last asked: {last.question}"
    return ToolOutcome(
        "memory_recall",
        msg,
        {"turns": len(turns)},
        {"last_question": last.question, "last_answer": last.answer, "turns": len(turns)},
    )
