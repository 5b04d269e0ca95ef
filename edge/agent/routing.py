"""Encoding + routing of a request.

- :class:`ServiceEncoder` asks the edge :class:`~edge.serving.service.InferenceService` (the
  bundle's encoder and router head): one call gives the sentence embedding (memory, cache) and
  the route probabilities calibrated with the bundle's temperature.
- :class:`KeywordRouter` decides from the skill pack's own extractors; it stands in when no
  bundle is loaded and lets tests pin the route (dependency injection). Its "confidence" is a
  rule score, not a calibrated probability — steps say which router decided.
- :class:`HashingEncoder` gives deterministic character-n-gram embeddings with the keyword
  route, for nodes without a bundle and for tests that must not depend on a random model.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from contracts.errors import AutoGLMError
from contracts.routes import DEFAULT_ROUTES
from skillpack import calculator, climate, units
from skillpack.kg.linking import EntityLinker


@dataclass(frozen=True)
class Encoded:
    embedding: np.ndarray  # float32, L2-normalised
    route: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    router: str  # "model" | "keyword"
    extra: dict[str, Any] = field(default_factory=dict)


class Encoder(Protocol):
    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]: ...


class ServiceEncoder:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        results = await self.service.infer(texts, priority=priority)
        out = []
        for r in results:  # each result names the routes of the model that computed it
            probs = r.probabilities
            names = list(r.routes) if len(r.routes) == len(probs) else [str(i) for i in range(len(probs))]
            out.append(
                Encoded(
                    np.asarray(r.embedding, dtype=np.float32),
                    r.route,
                    float(probs[r.route_index]),
                    {n: float(p) for n, p in zip(names, probs, strict=True)},
                    f"{r.model_name}:{r.model_version}/{r.adapter_set}",
                    "model",
                )
            )
        return out


_DEVICE_CODE = re.compile(r"(?<![A-Za-z])(?:PR|RB|CV|CP|OV|CH|CN)[\s_-]?\d{3}(?!\d)", re.IGNORECASE)
# any device-like reference: "W-48", "ex31", "TS 49", "#8", "20 号包装机", plus this node's codes
_ANY_DEVICE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{1,3}[\s#_-]?\d{1,4}(?!\d)|#\s?\d{1,3}|\d{1,3}\s*号")
_CONTROL = re.compile(
    r"\b(?:set|increase|decrease|reduce|raise|lower|turn (?:on|off)|switch (?:on|off)|start|stop|"
    r"shut ?down|restart|reset|calibrate|acknowledge|ack|clear the alarm|open|close|pause|resume)\b|"
    r"复位|确认.*报警|校准|设为|设置|设定|调到|调高|调低|降低|提高|降到|升到|启动|停止|关闭|打开|关掉|开启|暂停",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"status|reading|online|offline|running|\brun(?:ning)?\b|alarm|state|how is|what is .* (?:at|now)|"
    r"current|temperature|pressure|vibration|speed|level|load|flow|show|check|"
    r"状态|读数|在线|离线|在运行|运行吗|报警|跳闸|故障了|温度|压力|振动|速度|现在|当前|多少",
    re.IGNORECASE,
)
_RECALL = re.compile(
    r"what did i (?:just )?ask|what was my (?:last|previous)|what did you (?:just )?(?:say|answer)|"
    r"repeat (?:that|the last answer)|asked (?:you )?(?:so far|before|earlier)|did i (?:already )?ask|"
    r"remind me|how many questions|my (?:last|previous) (?:question|calculation)|(?:question|chat) history|"
    r"我刚才问|我上一个问题|我上一次|你刚才说|刚才的答案|上一个答案|提问记录|问过|问了几个|之前问|记住|提醒我|你关于",
    re.IGNORECASE,
)
_DOC = re.compile(
    r"\bhow (?:do|to|should|can) (?:i|we|you)?\b|procedure|\bsop\b|checklist|manual|instruction|alarm code|"
    r"\bsafety\b|\bppe\b|lockout|tagout|\bloto\b|calibrat|troubleshoot|"
    r"what does .* mean|definition|\bdefine\b|"
    r"\bexplain\b|\boee\b|mtbf|permit|spill|torque|recommended|rules? for|guideline|"
    r"怎么|如何|程序|规程|手册|作业指导|步骤|安全|校准|定义|规定|故障|扭矩|推荐|检查表|解释|劳保|穿戴|注意事项|是什么意思",
    re.IGNORECASE,
)
_CHAT = re.compile(
    r"^\W*(?:hi|hello|hey|thanks|thank you|thx|good (?:job|morning|evening|night)|nice|great|who are you|"
    r"what can you do|how are you|bye|你好|谢谢|多谢|您好|早上好|你是谁|嗨|再见|最近怎么样|你能做什么)",
    re.IGNORECASE,
)
_WEATHER = re.compile(
    r"weather|climate|temperature in|how (?:warm|cold|hot)|rain|snow|wind|sunny|cloudy|humid|\buv\b|"
    r"forecast|dry month|wet month|"
    r"气候|天气|气温|最高温|最低温|降水|下雨|下雪|刮风|晴|阴天|湿度|预报|冷不冷|热不热",
    re.IGNORECASE,
)
_KG = re.compile(
    r"\bwho (?:is|operates|maintains|supervises|runs|manages|supplied)|"
    r"\bwhich (?:line|site|plant|workshop|area)|"
    r"belongs? to|in charge|supervisor|maintenance (?:engineer|technician)|operator|supplier|vendor|"
    r"\blines?\b.*\b(?:at|in)\b|谁负责|谁操作|谁维护|主管|供应商|哪家|供应的|哪条线|哪个区|哪个厂|车间|产线|生产线|厂区",
    re.IGNORECASE,
)
_ARITH = re.compile(
    r"\d\s*[-+*/x×÷^]\s*\d|"
    r"\b(?:plus|minus|times|divided?|multiply|average|mean|sum|total|square root|percent|"
    r"left|remain|difference)\b|加|减|乘|除|平均|平方|开方|总共|剩",
    re.IGNORECASE,
)


_CODE_LIKE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{1,3}(?:-|_)\d{1,4}(?![\d.])")


def mask_codes(text: str, linker: EntityLinker | None = None) -> str:
    """Equipment codes replaced by the word "device" ("How often is PR 142 serviced in days" →
    "How often is device serviced in days"): the digits of a code are a name, never a quantity
    for the calculator or the unit converter."""
    spans = [(m.start(), m.end()) for m in _DEVICE_CODE.finditer(text)]
    spans += [(m.start(), m.end()) for m in _CODE_LIKE.finditer(text)]
    if linker is not None:
        from skillpack.text import to_ascii

        if len(to_ascii(text)) == len(text):  # linker spans index the folded text
            spans += [
                (m.start, m.end)
                for m in linker.link(text)
                if any(ch.isdigit() for ch in m.surface)
                and linker.graph.entities[m.entity_id].type in ("machine", "sensor", "line")
            ]
    if not spans:
        return text
    out, pos = [], 0
    for a, b in sorted(spans):
        if a < pos:
            continue
        out += [text[pos:a], "device"]
        pos = b
    return "".join([*out, text[pos:]])


class KeywordRouter:
    """Deterministic route from the skill extractors and keyword patterns."""

    def __init__(self, linker: EntityLinker | None = None) -> None:
        self.linker = linker

    def route(self, text: str) -> tuple[str, float]:
        low = text.lower()
        if _RECALL.search(text):
            return "memory_recall", 0.9
        device = _DEVICE_CODE.search(text) or _ANY_DEVICE.search(text)
        if device and _CONTROL.search(text) and not _DOC.search(low.replace("calibrat", "")):
            return "device_control", 0.85
        quantities = mask_codes(text, self.linker)  # codes are names, not quantities
        try:
            conv = units.solve(quantities)
            if conv.from_unit != conv.to_unit:  # "142 d = 142 d" converts nothing
                return "unit_convert", 0.9
        except AutoGLMError:
            pass
        if _WEATHER.search(text) and (climate.find_city_in_text(text) is not None or not device):
            return "climate", 0.85 if climate.find_city_in_text(text) else 0.7
        if device and _STATUS.search(text) and not _KG.search(text):
            return "device_status", 0.8
        try:
            calculator.solve(quantities)
            return "calculator", 0.9
        except AutoGLMError:
            pass
        if _KG.search(text) or (
            self.linker is not None and [m for m in self.linker.link(text) if m.score >= 0.3]
        ):
            return "kg_query", 0.8
        if _DOC.search(text):
            return "doc_search", 0.8
        if _ARITH.search(text) and re.search(r"\d", quantities):
            return "calculator", 0.6
        if _CHAT.search(text):
            return "chitchat", 0.8
        return "chitchat", 0.3


_NON_WORD = re.compile(r"[^0-9a-z\u4e00-\u9fff%.]+")


def hashing_embedding(text: str, dim: int = 256) -> np.ndarray:
    """Character 3-gram hashing (crc32) → L2-normalised vector; deterministic across processes."""
    words = _NON_WORD.sub(" ", text.lower()).split()
    t = f"  {' '.join(words)}  "
    v = np.zeros(dim, dtype=np.float32)
    for i in range(len(t) - 2):
        v[zlib.crc32(t[i : i + 3].encode("utf-8")) % dim] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n else v


class HashingEncoder:
    def __init__(self, router: KeywordRouter, dim: int = 256, version: str = "hashing-encoder") -> None:
        self.router = router
        self.dim = dim
        self.version = version

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        out = []
        for t in texts:
            route, conf = self.router.route(t)
            rest = (1.0 - conf) / max(len(DEFAULT_ROUTES) - 1, 1)
            probs = {r: (conf if r == route else rest) for r in DEFAULT_ROUTES}
            out.append(Encoded(hashing_embedding(t, self.dim), route, conf, probs, self.version, "keyword"))
        return out
