"""The web dashboard: its files at `/` (same origin as the API) and `GET /api/v1/platform`, the
deployment facts it shows (Flower's address, the LLM provider, upload and scoring limits).

The files are static and public (they hold no data); everything the pages show comes from the
authenticated API. Responses carry a strict Content-Security-Policy: scripts only from this origin,
no inline script, and no other host contacted.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from server.deps import Viewer
from server.strings import CheckedRoute

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".md")

router = APIRouter(tags=["dashboard"], route_class=CheckedRoute)
api_router = APIRouter(prefix="/api/v1", tags=["dashboard"], route_class=CheckedRoute)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    # no-cache: the browser revalidates (ETag) so a new release is picked up at once
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    # Browsers ask for it on pages without an icon of their own (/docs, JSON opened in a tab);
    # the dashboard inlines the same icon as a data: URL, so its navigations fetch nothing.
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=86400"})


@lru_cache(maxsize=256)
def _gzipped(path: str, mtime_ns: int) -> bytes:
    return gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0)


class DashboardFiles(StaticFiles):
    """StaticFiles with the security headers, revalidation, and gzip for text assets (the chart
    library is 210 KB raw, 71 KB gzipped), compressed once per file version and kept in memory."""

    async def get_response(self, path: str, scope: dict[str, Any]) -> Response:
        request_headers = dict(scope.get("headers") or [])
        gzip_ok = path.endswith(COMPRESSIBLE) and b"gzip" in request_headers.get(b"accept-encoding", b"")
        if gzip_ok:  # the gzipped representation has its own ETag (the file's + "-gz")
            scope = {**scope, "headers": [(k, v.replace(b'-gz"', b'"')) if k == b"if-none-match" else (k, v)
                                          for k, v in scope.get("headers") or []]}
        response = await super().get_response(path, scope)
        # no-cache: revalidated (ETag) on every use, so a new release shows at once
        response.headers.update({**SECURITY_HEADERS, "Cache-Control": "no-cache"})
        if gzip_ok and response.status_code in (200, 304) and "etag" in response.headers:
            response.headers["etag"] = response.headers["etag"].removesuffix('"') + '-gz"'
            response.headers["vary"] = "Accept-Encoding"
        if gzip_ok and response.status_code == 200 and isinstance(response, FileResponse):
            full = Path(response.path)
            body = _gzipped(str(full), full.stat().st_mtime_ns)
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            headers["Content-Encoding"] = "gzip"
            return Response(body, status_code=200, headers=headers, media_type=response.media_type)
        return response


def mount(app: Any) -> None:
    app.include_router(router)
    app.include_router(api_router)
    app.mount("/static", DashboardFiles(directory=STATIC_DIR), name="static")


@api_router.get("/platform", summary="Deployment facts the dashboard shows: Flower, LLM provider, limits")
def platform_info(request: Request, _: Viewer) -> dict[str, Any]:
    s = request.app.state.settings
    return {
        "version": request.app.version,
        "flower": {"host": s.flower_host, "port": s.flower_port,
                   "note": "started by `python -m server up` (unless --no-flower), with basic auth"},
        "llm": {"default_provider": s.default_llm_provider, "openai_configured": bool(s.openai_base_url),
                "model": s.llm_model if s.openai_base_url else None},
        "limits": {"dataset_max_bytes": s.dataset_max_bytes, "max_request_bytes": s.max_request_bytes,
                   "max_predict_rows": s.max_predict_rows},
        "database": "postgresql" if s.db_url.startswith("postgres") else "sqlite",
    }
