"""The operator console: static files (plain ES modules, no build step) served by the app itself.

``/`` is the console's page; its scripts and styles live under ``/console/<version>/``, where the version is
a hash of every file: a changed file gets a new address, so those answers are cached for a year and the page
itself is revalidated each time (its ETag). No CDN (control rooms are often isolated networks) and a
content security policy that allows scripts and styles from this origin only: no inline script, no inline
event handler, no inline style.
"""

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from schema.equipment import SENSORS_BY_TYPE
from serve.errors import ApiError

__all__ = ["CONSOLE_CSP", "Assets", "assets", "router"]

STATIC = Path(__file__).with_name("static")
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'self'")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


@dataclass(frozen=True)
class Assets:
    version: str
    files: dict[str, bytes]  # name -> bytes, the page's placeholders filled in
    page: bytes
    page_etag: str


@cache
def assets() -> Assets:
    """Read once per process: the files do not change while it runs."""
    files = {p.relative_to(STATIC).as_posix(): p.read_bytes() for p in sorted(STATIC.rglob("*")) if p.is_file()}
    files["units.js"] = _units_module()
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + body + b"\0")
    version = digest.hexdigest()[:16]
    page = files.pop("index.html").replace(b"__ASSETS__", f"/console/{version}".encode())
    return Assets(version=version, files=files, page=page, page_etag=f'"{hashlib.sha256(page).hexdigest()[:24]}"')


def _units_module() -> bytes:
    """The unit and normal range of each equipment type's standard sensors (schema/equipment.py), for sensors an
    equipment does not configure itself: one source of truth, handed to the browser as a module."""
    table = {str(t): {spec.name: {"unit": spec.unit, "low": spec.low, "high": spec.high} for spec in specs}
             for t, specs in SENSORS_BY_TYPE.items()}
    return (f"// Generated from schema/equipment.py by serve/console: the standard sensors of each equipment type.\n"
            f"export const STANDARD_SENSORS = {json.dumps(table, sort_keys=True)};\n").encode()


def _headers(cache_control: str, etag: str | None = None) -> dict[str, str]:
    headers = {"Cache-Control": cache_control, "Content-Security-Policy": CONSOLE_CSP}
    if etag:
        headers["ETag"] = etag
    return headers


router = APIRouter(include_in_schema=False)


@router.get("/")
async def page(request: Request) -> Response:
    """The console's one page; the views are routed in the browser (``#/alerts``, ``#/equipment/ID`` ...)."""
    found = assets()
    if request.headers.get("if-none-match") == found.page_etag:
        return Response(status_code=304, headers=_headers(REVALIDATE, found.page_etag))
    return Response(found.page, media_type="text/html; charset=utf-8", headers=_headers(REVALIDATE, found.page_etag))


@router.get("/console/{version}/{name:path}")
async def asset(version: str, name: str) -> Response:
    found = assets()
    body = found.files.get(name)
    if version != found.version or body is None:  # an old page asks for an old version: reload the page
        raise ApiError(404, f"no console file {name} in version {version} (reload the page)")
    media = _TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(body, media_type=media, headers=_headers(IMMUTABLE))
