"""File responses for edges: sha256 ETag, If-None-Match, single-range ``Range`` requests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from contracts.errors import AutoGLMError

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1024 * 1024


class RangeNotSatisfiable(AutoGLMError):
    status = 416
    code = "range_not_satisfiable"


def _iter_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def file_response(
    request: Request, path: Path, sha256: str, media_type: str = "application/octet-stream"
) -> Response:
    size = path.stat().st_size
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Content-SHA256": sha256,
        "Cache-Control": "no-cache",
    }
    inm = request.headers.get("if-none-match")
    if inm and etag in [t.strip() for t in inm.split(",")]:
        return Response(status_code=304, headers=headers)
    rng = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if rng and (not if_range or if_range.strip() == etag):
        m = _RANGE_RE.match(rng.strip())
        if not m or (not m.group(1) and not m.group(2)):
            raise RangeNotSatisfiable(
                f"unsupported Range {rng!r} (one bytes=start-end range)",
                headers={"Content-Range": f"bytes */{size}"},
            )
        if m.group(1):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
        else:  # suffix range: the last N bytes
            start = max(size - int(m.group(2)), 0)
            end = size - 1
        end = min(end, size - 1)
        if start >= size or start > end:
            raise RangeNotSatisfiable(
                f"range {rng!r} is outside the file ({size} bytes)",
                headers={"Content-Range": f"bytes */{size}"},
            )
        length = end - start + 1
        headers.update({"Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(length)})
        return StreamingResponse(
            _iter_file(path, start, length), status_code=206, headers=headers, media_type=media_type
        )
    headers["Content-Length"] = str(size)
    return StreamingResponse(_iter_file(path, 0, size), headers=headers, media_type=media_type)
