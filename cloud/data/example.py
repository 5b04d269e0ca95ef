"""The one record type of the training data."""

from __future__ import annotations

from dataclasses import dataclass

LANGS = ("en", "zh")


@dataclass(frozen=True)
class Example:
    """One labelled request. ``template_id`` names the phrasing it came from (splits go by it)."""

    text: str
    route: str
    lang: str  # "en" | "zh"
    template_id: str


def detect_lang(text: str) -> str:
    """``"zh"`` when the text holds any CJK ideograph, else ``"en"``."""
    return "zh" if any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text) else "en"
