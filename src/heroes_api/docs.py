"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served whole by
the service itself: a browser that can reach the service but nothing else still renders them.

FastAPI's default pages load their JavaScript, CSS and favicon from public CDNs, so they are
blank behind a firewall or offline. Here the same pages (FastAPI's own ``get_swagger_ui_html`` and
``get_redoc_html``) point at copies that ship inside the pinned ``fastapi-offline`` wheel
(Swagger UI's bundle and CSS, ReDoc's standalone bundle, FastAPI's favicon), served from
``ASSETS_PATH`` with ETags. Nothing of that package runs but its files. ReDoc is asked not to
load Google Fonts; it falls back to the browser's own.

The pages carry a Content-Security-Policy that lets them load only from the service itself (plus
inline scripts and styles, ``data:`` images and ReDoc's ``blob:`` search worker, which the two
bundles need): ReDoc's bundle hardcodes one image on a CDN (the Redocly logo beside "API docs by
Redocly"), and the browser now never asks for it, online or not; ReDoc hides it when it fails.
"""

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
    )
)

PAGE_METHODS = ["GET", "HEAD"]  # as FastAPI's own pages answer
router = APIRouter(include_in_schema=False)


def _self_contained(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def _root(request: Request) -> str:
    """The prefix a proxy serves the app under (``--root-path``), for URLs the browser follows."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _openapi_url(request: Request) -> str:
    openapi_url: str = request.app.openapi_url  # install() refuses an app without one
    return _root(request) + openapi_url


@router.api_route(SWAGGER_UI_PATH, methods=PAGE_METHODS, response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    assets = _root(request) + ASSETS_PATH
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{assets}/{SWAGGER_JS}",
        swagger_css_url=f"{assets}/{SWAGGER_CSS}",
        swagger_favicon_url=f"{assets}/{FAVICON}",
        oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT_PATH,
        init_oauth=app.swagger_ui_init_oauth,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    return _self_contained(page)


@router.api_route(OAUTH2_REDIRECT_PATH, methods=PAGE_METHODS, response_class=HTMLResponse)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return _self_contained(get_swagger_ui_oauth2_redirect_html())


@router.api_route(REDOC_PATH, methods=PAGE_METHODS, response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    assets = _root(request) + ASSETS_PATH
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/{REDOC_JS}",
        redoc_favicon_url=f"{assets}/{FAVICON}",
        with_google_fonts=False,
    )
    return _self_contained(page)


def install(app: FastAPI) -> None:
    """Serve the documentation pages and their assets. ``app`` must be built with
    ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages would otherwise answer first) and
    with an OpenAPI document."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("docs.install serves /docs and /redoc: build the app without FastAPI's")
    if not app.openapi_url:
        raise ValueError("the documentation pages need the OpenAPI document (openapi_url)")
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
