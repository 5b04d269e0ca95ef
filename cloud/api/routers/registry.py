"""Models, versions, aliases and bundle registration (upload or path)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cloud.api.auth import Principal, require_admin, require_reader
from cloud.api.container import CloudServices
from cloud.api.deps import services
from cloud.api.downloads import file_response
from cloud.registry.schemas import (
    AliasEventOut,
    AliasSet,
    ModelCreate,
    ModelOut,
    RegisterFromPath,
    VersionOut,
    VersionUpdate,
)
from contracts.errors import BadRequest, PayloadTooLarge
from contracts.manifest import MANIFEST_FILE

router = APIRouter(prefix="/api/v1", tags=["registry"])
Svc = Annotated[CloudServices, Depends(services)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(require_reader)]


def _kv(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            if "=" not in part:
                raise BadRequest(f"{part!r} must be key=value")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@router.get("/models", response_model=list[ModelOut])
def list_models(svc: Svc, _: Reader) -> list[ModelOut]:
    return svc.registry.list_models()


@router.post("/models", response_model=ModelOut, status_code=201)
def create_model(body: ModelCreate, svc: Svc, _: Admin) -> ModelOut:
    return svc.registry.create_model(body)


@router.get("/models/{model}", response_model=ModelOut)
def get_model(model: str, svc: Svc, _: Reader) -> ModelOut:
    return svc.registry.get_model(model)


@router.get("/models/{model}/versions", response_model=list[VersionOut])
def list_versions(model: str, svc: Svc, _: Reader) -> list[VersionOut]:
    return svc.registry.list_versions(model)


@router.get("/models/{model}/versions/{ref}", response_model=VersionOut)
def get_version(model: str, ref: str, svc: Svc, _: Reader) -> VersionOut:
    return svc.registry.get_version(model, ref)


@router.patch("/models/{model}/versions/{ref}", response_model=VersionOut)
def update_version(model: str, ref: str, body: VersionUpdate, svc: Svc, _: Admin) -> VersionOut:
    return svc.registry.update_version(model, ref, body)


@router.get("/models/{model}/versions/{ref}/manifest")
def get_manifest(model: str, ref: str, request: Request, svc: Svc, _: Reader) -> Response:
    path, sha = svc.registry.file_blob(model, ref, MANIFEST_FILE)
    return file_response(request, path, sha, media_type="application/yaml")


@router.get("/models/{model}/versions/{ref}/files/{file_path:path}")
def get_file(model: str, ref: str, file_path: str, request: Request, svc: Svc, _: Reader) -> Response:
    path, sha = svc.registry.file_blob(model, ref, file_path)
    return file_response(request, path, sha)


@router.get("/blobs/{sha256}")
def get_blob(sha256: str, request: Request, svc: Svc, _: Reader) -> Response:
    return file_response(request, svc.store.open_path(sha256), sha256)


@router.post("/bundles", response_model=VersionOut, status_code=201)
async def upload_bundle(
    request: Request,
    svc: Svc,
    who: Admin,
    tags: Annotated[str | None, Query(description="k=v,k2=v2")] = None,
    dataset_sha256: Annotated[str | None, Query(description="Lineage: training data hash")] = None,
) -> VersionOut:
    """Register a bundle uploaded as the request body (a tar or tar.gz archive)."""
    limit = svc.settings.upload_max_bytes
    with tempfile.TemporaryDirectory(prefix="autoglm-upload-") as tmp:
        archive = Path(tmp) / "bundle.tar"
        size = 0
        with archive.open("wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"bundle upload larger than {limit} bytes")
                f.write(chunk)
        if size == 0:
            raise BadRequest("empty upload: send the bundle archive as the request body")
        lineage = {"dataset_sha256": dataset_sha256} if dataset_sha256 else {}
        return await run_in_threadpool(
            svc.registry.register_archive, archive, actor=who.actor, tags=_kv(tags), lineage=lineage
        )


@router.post("/bundles/from-path", response_model=VersionOut, status_code=201)
def register_from_path(body: RegisterFromPath, svc: Svc, who: Admin) -> VersionOut:
    """Register a bundle directory or archive that is already on the controller's disk."""
    return svc.registry.register_path(
        Path(body.path), actor=who.actor, metrics=body.metrics, lineage=body.lineage, tags=body.tags
    )


@router.put("/models/{model}/aliases/{alias}", response_model=AliasEventOut)
def set_alias(model: str, alias: str, body: AliasSet, svc: Svc, who: Admin) -> AliasEventOut:
    return svc.registry.set_alias(model, alias, body.version, actor=who.actor, reason=body.reason)


@router.delete("/models/{model}/aliases/{alias}", response_model=AliasEventOut)
def delete_alias(
    model: str, alias: str, svc: Svc, who: Admin, reason: Annotated[str, Query(min_length=1)]
) -> AliasEventOut:
    return svc.registry.delete_alias(model, alias, actor=who.actor, reason=reason)


@router.get("/models/{model}/aliases-history", response_model=list[AliasEventOut])
def alias_history(model: str, svc: Svc, _: Reader, alias: str | None = None) -> list[AliasEventOut]:
    return svc.registry.alias_history(model, alias)
