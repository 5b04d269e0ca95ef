"""Commands the cloud sends to a node, the node's acks, and their state vocabularies.

One command travels as one record of a ``command`` envelope on ``{p}/down/{node}/commands``:
``{"command_id": "...", "command": {"type": "set_desired_version", "model": ..., ...}}``
(:meth:`Command.to_record` / :meth:`Command.from_record`). The node runs each command id once
and answers with one record of an ``ack`` envelope on ``{p}/up/{node}/ack``:
``{"kind": "command", "id": "...", "ok": true, "result": {...}}`` or
``{"kind": "command", "id": "...", "ok": false, "error": "<type>: <reason>"}``
(:meth:`CommandAck.to_record`). The HTTP fallback (``POST /api/v1/nodes/{id}/acks``) takes the
same model, also in its short form ``{"command_id", "ok", "version", "detail"}``.

The cloud's ack of one uplink sync message (memory, session, hard examples, events) is a
different thing: ``{"id": message_id, "status": AckStatus}`` (see docs/arch/mqtt.md).

Command lifecycle in the cloud's command ledger (``CommandStatus``)::

    queued ──(leader sends)──▶ sent ──(ack ok)──▶ acked
       (follower replica)        └──(ack not ok)──▶ failed
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, model_validator

COMMAND_ID_MAX = 128


class CommandKind(StrEnum):
    """The commands a node's control plane runs (``Command.type``)."""

    SET_DESIRED_VERSION = "set_desired_version"
    SET_TRAFFIC_SPLIT = "set_traffic_split"


class CommandStatus(StrEnum):
    """State of one command in the cloud's ledger (``cloud.db.models.Command.status``)."""

    QUEUED = "queued"  # stored by a follower replica; the leader sends it
    SENT = "sent"  # handed to the transport; resent until the node acks
    ACKED = "acked"  # the node applied it (the ack is the outcome, not a receipt)
    FAILED = "failed"  # the node answered with an error


UNACKED_STATUSES = frozenset({CommandStatus.QUEUED, CommandStatus.SENT})


class AckStatus(StrEnum):
    """The cloud's answer to one uplink sync message."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # applied before; only re-acked
    REJECTED = "rejected"  # refused for good (the node parks it as a dead letter)


class AckKind(StrEnum):
    """What an ack record on ``{p}/up/{node}/ack`` acknowledges."""

    COMMAND = "command"  # a command's outcome (:class:`CommandAck`)
    MESSAGE = "message"  # receipt of a downlink memory / resync message


class Command(BaseModel):
    """One command to one node: ``type`` (a :class:`CommandKind` for the control plane; other
    handlers may own other types) and its arguments. Unknown keys travel unchanged."""

    model_config = ConfigDict(extra="allow")

    command_id: str = Field(default="", max_length=COMMAND_ID_MAX, description="Set by the sender")
    type: str = Field(min_length=1, max_length=64, description="A CommandKind value")
    model: str | None = Field(default=None, description="Model name")
    version: str | None = Field(default=None, description="set_desired_version: the version to serve")
    manifest_sha256: str | None = Field(default=None, description="Expected manifest hash")
    manifest_url: str | None = Field(default=None, description="Where the manifest is downloaded")
    files_url: str | None = Field(default=None, description="Where the bundle files are downloaded")
    weights: dict[str, float] | None = Field(default=None, description="set_traffic_split: version -> share")
    manifests: dict[str, dict[str, Any]] | None = Field(
        default=None, description="set_traffic_split: version -> {manifest_sha256, manifest_url}"
    )

    @classmethod
    def set_desired_version(
        cls, model: str, version: str, manifest_sha256: str, *, base_url: str | None = None
    ) -> Command:
        base = base_url if base_url is not None else f"/api/v1/models/{model}/versions/{version}"
        return cls(
            type=CommandKind.SET_DESIRED_VERSION,
            model=model,
            version=version,
            manifest_sha256=manifest_sha256,
            manifest_url=f"{base}/manifest",
            files_url=f"{base}/files/",
        )

    @classmethod
    def set_traffic_split(
        cls, model: str, weights: dict[str, float], manifest_sha256: dict[str, str]
    ) -> Command:
        return cls(
            type=CommandKind.SET_TRAFFIC_SPLIT,
            model=model,
            weights=weights,
            manifests={
                ver: {
                    "manifest_sha256": sha,
                    "manifest_url": f"/api/v1/models/{model}/versions/{ver}/manifest",
                }
                for ver, sha in manifest_sha256.items()
            },
        )

    @property
    def kind(self) -> CommandKind | None:
        """The known kind, or None for a type the control plane does not own."""
        try:
            return CommandKind(self.type)
        except ValueError:
            return None

    def body(self) -> dict[str, Any]:
        """The arguments as sent (no ``command_id``, no unset fields)."""
        return self.model_dump(exclude_none=True, exclude={"command_id"})

    def payload(self) -> dict[str, Any]:
        """``body()`` plus ``command_id`` (what a node's handlers and the ledger see)."""
        return {**self.body(), "command_id": self.command_id}

    def with_id(self, command_id: str) -> Command:
        return self.model_copy(update={"command_id": command_id})

    def to_record(self) -> dict[str, Any]:
        return {"command_id": self.command_id, "command": self.body()}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Command:
        """Parse one wire record; raises ``ValueError`` when it is not a command."""
        cid, body = rec.get("command_id"), rec.get("command")
        if not isinstance(cid, str) or not cid or not isinstance(body, dict):
            raise ValueError("command without command_id/command")
        return cls.model_validate({**body, "command_id": cid})


class CommandAck(BaseModel):
    """A node's answer to one command: the outcome (applied, or the reason it was not)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    kind: Literal["command"] = "command"
    command_id: str = Field(
        min_length=1, max_length=COMMAND_ID_MAX, validation_alias=AliasChoices("command_id", "id")
    )
    ok: StrictBool = Field(description="JSON true or false only (0/1/'yes' are refused)")
    result: dict[str, Any] = Field(default_factory=dict, description="The handler's answer (ok acks)")
    error: str = Field(default="", description="'<type>: <reason>' (failed acks)")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """Accept the HTTP fallback's ``{"command_id", "ok", "version", "detail"}``."""
        if isinstance(data, dict) and "result" not in data and ("version" in data or "detail" in data):
            data = dict(data)
            version, detail = data.pop("version", ""), data.pop("detail", "")
            if data.get("ok"):
                data["result"] = {k: v for k, v in (("version", version), ("detail", detail)) if v}
            else:
                data.setdefault("error", detail)
                data["result"] = {"version": version} if version else {}
        return data

    @classmethod
    def success(cls, command_id: str, result: dict[str, Any] | None = None) -> CommandAck:
        return cls(command_id=command_id, ok=True, result=dict(result or {}))

    @classmethod
    def failure(cls, command_id: str, error: BaseException | str) -> CommandAck:
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
        return cls(command_id=command_id, ok=False, error=text)

    @property
    def detail(self) -> str:
        return self.error or str(self.result.get("detail") or "")

    @property
    def version(self) -> str:
        """The version the node runs after handling the command ('' when it did not say)."""
        return str(self.result.get("version") or "")

    @property
    def status(self) -> CommandStatus:
        return CommandStatus.ACKED if self.ok else CommandStatus.FAILED

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": AckKind.COMMAND.value, "id": self.command_id, "ok": self.ok}
        if self.ok:
            rec["result"] = dict(self.result)
        else:
            rec["error"] = self.error
        return rec
