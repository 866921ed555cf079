"""The inspector: a single page at /ui (our own HTML, CSS, JS and SVG; nothing fetched
from elsewhere), and the one read-only endpoint it needs that the API lacked.

The API key is typed into the page and kept in the tab's sessionStorage; every call
sends it as `Authorization: Bearer`, never in a URL, so it reaches neither the access
log nor the page source. The pages are served with a strict Content-Security-Policy
(scripts and connections to this origin only) and no referrer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response

from service.core.errors import ERROR_RESPONSES, NotFound
from service.deps import (
    ClockDep,
    EmbedderDep,
    LLMDep,
    ModelsDep,
    SessionDep,
    SettingsDep,
    TenantDep,
)
from service.ui.schemas import TenantOverview
from service.ui.service import tenant_overview

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
               ".txt": "text/plain; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["inspector"], responses=ERROR_RESPONSES)


@router.get("/v1/tenant", response_model=TenantOverview)
def overview(tenant: TenantDep, session: SessionDep, settings: SettingsDep, llm: LLMDep,
             embedder: EmbedderDep, models: ModelsDep, clock: ClockDep) -> TenantOverview:
    """The key's tenant at a glance: users, catalog size, the models in use, recent
    refreshes and failures, and the refresh queue."""
    return tenant_overview(session, tenant, settings, llm, embedder, models, clock())


def _assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the page, read once: the set of servable paths is fixed."""
    return {path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
            for path in sorted(STATIC.iterdir()) if path.suffix in MEDIA_TYPES}


def install_inspector(app: FastAPI) -> None:
    assets = _assets()
    app.include_router(router)

    @app.get("/ui", include_in_schema=False)
    def inspector_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.api_route("/ui/", methods=["GET", "HEAD"], include_in_schema=False)
    def inspector_page() -> Response:
        body, media = assets["index.html"]
        return Response(body, media_type=media, headers=SECURITY_HEADERS)

    @app.api_route("/ui/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def inspector_asset(name: str) -> Response:
        if name not in assets:
            raise NotFound("not_found", f"No inspector file {name!r}.")
        body, media = assets[name]
        return Response(body, media_type=media, headers=SECURITY_HEADERS)
