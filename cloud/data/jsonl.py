"""User data as JSONL: one ``{"text": ..., "route": ...}`` object per line.

Optional fields: ``lang`` ("en"/"zh", detected from the text when absent) and ``template_id``
(default ``"<file name>:<line>"``). Blank lines are allowed; every other bad line raises
:class:`contracts.errors.DataError` naming the file, the line number and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cloud.data.example import LANGS, Example, detect_lang
from contracts.errors import DataError


def _parse_line(raw: str, where: str, routes: set[str] | None, default_tid: str) -> Example:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("text", "route"):
        if key not in obj:
            raise DataError(f"{where}: missing field {key!r}")
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: field {key!r} must be a string, got {type(obj[key]).__name__}")
    text, route = obj["text"].strip(), obj["route"].strip()
    if not text:
        raise DataError(f"{where}: empty text")
    if not route:
        raise DataError(f"{where}: empty route")
    if routes is not None and route not in routes:
        raise DataError(f"{where}: unknown route {route!r} (known: {', '.join(sorted(routes))})")
    lang = obj.get("lang") or detect_lang(text)
    if lang not in LANGS:
        raise DataError(f"{where}: lang must be one of {LANGS}, got {lang!r}")
    tid = obj.get("template_id") or default_tid
    if not isinstance(tid, str):
        raise DataError(f"{where}: field 'template_id' must be a string")
    return Example(text=text, route=route, lang=lang, template_id=tid)


def load_jsonl(path: str | Path, routes: list[str] | None = None) -> list[Example]:
    """Read and validate a JSONL file. ``routes``: the allowed labels (None: any non-empty label)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    allowed = set(routes) if routes is not None else None
    out: list[Example] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            out.append(_parse_line(raw, f"{path}:{lineno}", allowed, f"{path.name}:{lineno}"))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            row = {"text": ex.text, "route": ex.route, "lang": ex.lang, "template_id": ex.template_id}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def routes_of(examples: Iterable[Example]) -> list[str]:
    """The route labels in first-seen order."""
    return list(dict.fromkeys(ex.route for ex in examples))
