"""Prompt engine: YAML templates per route (and per context: ``<route>.followup`` in a session
follow-up) that build the request sent to the cloud — the question, the relevant memory, the
conversation and the steps so far — bounded to ``max_chars``.

The cloud tool service reads ``text`` (the question); the built ``prompt`` travels with it for a
large language model plugged in behind an OpenAI-compatible endpoint as one more cloud tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import BadRequest

_FIELDS = ("history", "memory", "steps")  # shortened in this order when over budget


@dataclass(frozen=True)
class Prompt:
    template: str  # id of the template used
    text: str
    truncated: bool


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class PromptEngine:
    def __init__(self, templates: dict[str, str], max_chars: int = 2000) -> None:
        if "default" not in templates:
            raise BadRequest("prompt templates need a 'default' template")
        self.templates = templates
        self.max_chars = max_chars

    @classmethod
    def load(cls, path: Path | None = None, max_chars: int | None = None) -> PromptEngine:
        if path is None:
            raw = resources.files("edge.agent").joinpath("prompts/default.yaml").read_text(encoding="utf-8")
        else:
            raw = Path(path).read_text(encoding="utf-8")
        doc = yaml.safe_load(raw) or {}
        templates = doc.get("templates")
        if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
            raise BadRequest(f"{path or 'default prompts'}: 'templates' must map names to strings")
        return cls(templates, int(max_chars or doc.get("max_chars", 2000)))

    def choose(self, route: str, followup: bool = False) -> str:
        if followup and f"{route}.followup" in self.templates:
            return f"{route}.followup"
        return route if route in self.templates else "default"

    def build(
        self,
        route: str,
        question: str,
        *,
        confidence: float = 0.0,
        node: str = "",
        language: str = "English",
        memory: list[str] | None = None,
        history: list[str] | None = None,
        steps: list[dict[str, Any]] | None = None,
        followup: bool = False,
    ) -> Prompt:
        name = self.choose(route, followup)
        parts = {
            "memory": [f"- {m}" for m in (memory or [])] or ["- (none)"],
            "history": [f"- {h}" for h in (history or [])] or ["- (none)"],
            "steps": [f"- {_step_line(s)}" for s in (steps or [])] or ["- (none)"],
        }
        truncated = False
        while True:
            values = _Default(
                question=question,
                route=route,
                confidence=f"{confidence:.2f}",
                node=node or "edge",
                language=language,
                **{k: "\n".join(v) for k, v in parts.items()},
            )
            text = self.templates[name].format_map(values).strip()
            if len(text) <= self.max_chars:
                return Prompt(name, text, truncated)
            truncated = True
            victim = next((f for f in _FIELDS if len(parts[f]) > 1 or parts[f] != ["- …"]), None)
            if victim is None:
                return Prompt(name, text[: self.max_chars], True)
            parts[victim] = parts[victim][1:] if len(parts[victim]) > 1 else ["- …"]


def _step_line(step: dict[str, Any]) -> str:
    kind = step.get("kind", "step")
    body = ", ".join(
        f"{k}={v}" for k, v in step.items() if k not in ("kind", "t_ms") and not isinstance(v, dict | list)
    )
    return f"{kind}: {body}"[:300]
