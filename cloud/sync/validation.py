"""Bounded validation of a node message's body (the hub applies what this returns).

Everything a hostile body could make large is capped before or while it is validated: the frame,
record count, decompressed size and number of JSON values were checked by
:func:`contracts.envelope.decode`; here knowledge is validated straight from JSON into models by
pydantic-core with a maximum list length (nesting beyond its recursion limit of 200 is invalid
JSON, and a knowledge record has no free-form field anyway), other kinds are parsed with the
envelope's depth limit, and a failure becomes one :class:`EnvelopeRejected` whose message names
at most :data:`MAX_ERRORS` errors, each cut to :data:`ERROR_CHARS` — never the whole list.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from contracts.envelope import ContentType, Envelope, EnvelopeRejected, RejectReason, parse_body, shorten
from contracts.memory import MAX_PATH_HOPS, KnowledgeRecord, PathPriorRecord, SessionState
from skillpack.kg.schema import path_refusal

MAX_ERRORS = 5
ERROR_CHARS = 60


@lru_cache(maxsize=4)
def _prior_list(max_records: int) -> TypeAdapter[list[PathPriorRecord]]:
    return TypeAdapter(Annotated[list[PathPriorRecord], Field(max_length=max_records)])


def _path_priors(env: Envelope, max_records: int) -> list[PathPriorRecord]:
    """A node's path priors: typed and bounded (contracts), its own (the record's node and the HLC
    of the count name the sender: no node can write another's), and paths of the graph schema."""
    try:
        adapter = _prior_list(max_records)
        models = adapter.validate_json(env.body) if env.body else adapter.validate_python(env.records)
    except ValidationError as err:
        raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"path prior {summarize(err)}") from None
    if len(models) != env.n_records:
        raise EnvelopeRejected(
            RejectReason.MALFORMED, f"body has {len(models)} records, header {env.n_records}"
        )
    for rec in models:
        if rec.node != env.node_id or rec.origin != env.node_id:
            raise EnvelopeRejected(
                RejectReason.WRONG_SENDER, shorten(f"path prior of {rec.node!r} (HLC {rec.origin!r})", 120)
            )
        refusal = path_refusal(rec.start_type, rec.relations, MAX_PATH_HOPS)
        if refusal is not None:
            raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"path prior: {refusal}")
    return models


@lru_cache(maxsize=4)
def _knowledge_list(max_records: int) -> TypeAdapter[list[KnowledgeRecord]]:
    return TypeAdapter(Annotated[list[KnowledgeRecord], Field(max_length=max_records)])


def summarize(err: ValidationError) -> str:
    """The first :data:`MAX_ERRORS` errors as ``loc: message``, each cut short, plus how many more."""
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    parts = [
        shorten(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}", ERROR_CHARS)
        for e in errors[:MAX_ERRORS]
    ]
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_body(env: Envelope, *, max_records: int, max_depth: int) -> list[Any]:
    """The typed records of an ordered message (knowledge, session state) or its plain records
    (hard examples, events). Raises :class:`EnvelopeRejected` (``malformed``/``invalid_record``)."""
    ct = env.content_type
    if ct is ContentType.PATH_PRIOR:
        return _path_priors(env, max_records)
    if ct is ContentType.MEMORY and env.body:
        try:
            models = _knowledge_list(max_records).validate_json(env.body)
        except ValidationError as err:
            if any(
                e["type"] == "json_invalid" for e in err.errors(include_url=False, include_input=False)[:1]
            ):
                raise EnvelopeRejected(
                    RejectReason.MALFORMED, f"body is not JSON: {summarize(err)}"
                ) from None
            raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"memory record {summarize(err)}") from None
        if len(models) != env.n_records:
            raise EnvelopeRejected(
                RejectReason.MALFORMED, f"body has {len(models)} records, header {env.n_records}"
            )
        return models
    records = parse_body(env.body, env.n_records, max_depth=max_depth) if env.body else env.records
    try:
        if ct is ContentType.MEMORY:
            return [KnowledgeRecord.model_validate(r) for r in records]
        if ct is ContentType.SESSION:
            return [SessionState.model_validate(r) for r in records]
    except ValidationError as err:
        raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"{ct.value} record {summarize(err)}") from None
    if ct is ContentType.HARD_EXAMPLE and not all(isinstance(r.get("id"), str) for r in records):
        raise EnvelopeRejected(RejectReason.INVALID_RECORD, "hard example without a string id")
    return records
