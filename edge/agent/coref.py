"""Session coreference: a short follow-up ("and line 3?", "what about OV-123?", "那3号线呢？")
reuses the previous question with the new entity in place of the old one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.agent.memory import Session
from skillpack.kg.linking import EntityLinker

_FOLLOWUP = re.compile(
    r"^\s*(?:and|what about|how about|same for|and for|also)\b|^\s*(?:那|还有|那么)|呢\s*[?？]?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Rewrite:
    text: str
    replaced: str
    by: str
    entity: str


def resolve_followup(text: str, session: Session | None, linker: EntityLinker) -> Rewrite | None:
    if session is None or not _FOLLOWUP.search(text) or len(text) > 60:
        return None
    last_q = session.slots.get("last_question")
    last_surface = session.slots.get("last_mention")
    if not last_q or not last_surface or last_surface not in last_q:
        return None
    mentions = linker.link(text, context_site=session.slots.get("site"))
    mentions = [m for m in mentions if m.score >= 0.99]
    if not mentions:
        return None
    new = mentions[0]
    return Rewrite(last_q.replace(last_surface, new.surface, 1), last_surface, new.surface, new.entity_id)
