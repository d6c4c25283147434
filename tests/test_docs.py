"""/docs and /redoc reference nothing but the service itself, and the service serves all of it
(tests/test_docs_browser.py renders them in a browser that can reach nothing else)."""

from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

from heroes_api import docs
from heroes_api.app import create_app
from heroes_api.config import Settings


class References(HTMLParser):
    """Every URL a page makes the browser load: ``src``, ``href`` and ReDoc's ``spec-url``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in ("src", "href", "spec-url") and value
        ]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def app() -> FastAPI:
    return create_app(Settings(database_url="sqlite://"))


def client(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
async def test_pages_load_only_local_assets_that_are_served(
    app: FastAPI, page: str, assets: set[str]
) -> None:
    async with client(app) as http:
        response = await http.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert (await http.head(page)).status_code == 200
        html = response.text
        assert "://" not in html  # no absolute URL anywhere: no CDN, no Google Fonts, no favicon
        urls = references(html)
        assert {url.rpartition("/")[2] for url in urls if url.startswith("/docs/assets/")} == assets
        for url in urls:
            assert url.startswith("/"), url
            if url == "/openapi.json":
                continue
            asset = await http.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rindex(".") :]
            assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
            assert int(asset.headers["content-length"]) > 1000  # the real file, not a stub
            assert asset.headers["etag"]
    # The page asks for the OpenAPI document on this service (Swagger UI's config, ReDoc's tag).
    assert "url: '/openapi.json'" in html or 'spec-url="/openapi.json"' in html


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_pages_let_the_browser_load_only_from_the_service(app: FastAPI, page: str) -> None:
    """ReDoc's bundle hardcodes the Redocly logo on a CDN: the policy keeps the browser from
    asking for it (tests/test_docs_browser.py sees no request leave)."""
    async with client(app) as http:
        response = await http.get(page)
    policy = dict(
        directive.strip().partition(" ")[::2]
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert "://" not in response.headers["content-security-policy"]


async def test_swagger_ui_oauth2_redirect_is_served(app: FastAPI) -> None:
    async with client(app) as http:
        page = await http.get("/docs")
        redirect = await http.get("/docs/oauth2-redirect")
    assert "window.location.origin + '/docs/oauth2-redirect'" in page.text
    assert redirect.status_code == 200
    assert "://" not in redirect.text


async def test_pages_follow_the_root_path_a_proxy_serves_them_under(app: FastAPI) -> None:
    async with client(app, root_path="/api") as http:
        swagger = (await http.get("/api/docs")).text
        redoc = (await http.get("/api/redoc")).text
        asset = await http.get("/api/docs/assets/swagger-ui.css")
    assets = "/api/docs/assets/"
    assert set(references(swagger)) == {
        f"{assets}swagger-ui.css",
        f"{assets}favicon.png",
        f"{assets}swagger-ui-bundle.js",
    }
    assert "url: '/api/openapi.json'" in swagger
    assert "'/api/docs/oauth2-redirect'" in swagger
    assert set(references(redoc)) == {
        f"{assets}favicon.png",
        f"{assets}redoc.standalone.js",
        "/api/openapi.json",
    }
    assert asset.status_code == 200


async def test_the_assets_answer_304_to_a_browser_that_has_them(app: FastAPI) -> None:
    async with client(app) as http:
        first = await http.get("/docs/assets/swagger-ui-bundle.js")
        again = await http.get(
            "/docs/assets/swagger-ui-bundle.js", headers={"if-none-match": first.headers["etag"]}
        )
        missing = await http.get("/docs/assets/no-such-file.js")
    assert (again.status_code, again.content) == (304, b"")
    assert missing.status_code == 404


def test_the_pages_are_not_in_the_openapi_document(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
    assert "/heroes/" in paths


def test_install_refuses_an_app_that_serves_fastapis_cdn_pages() -> None:
    with pytest.raises(ValueError, match="without FastAPI's"):
        docs.install(FastAPI())
    with pytest.raises(ValueError, match="without FastAPI's"):
        docs.install(FastAPI(docs_url=None))
    with pytest.raises(ValueError, match="need the OpenAPI document"):
        docs.install(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))
