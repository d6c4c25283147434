"""/docs and /redoc render in a real browser that can reach the service and nothing else.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) loads each page from a served
instance. Nothing but 127.0.0.1 is reachable: no host name resolves (``--host-resolver-rules``)
and every other address goes through a proxy that refuses connections (``--proxy-server``;
loopback always bypasses a proxy). Swagger UI and ReDoc write the operations' names and paths
into the DOM with JavaScript, from the OpenAPI document, so those appear only if the page's
scripts came from the service. Chromium's network log tells which requests the page made (they
carry its origin as initiator; the browser's own background requests carry none): only to the
service. The same check on FastAPI's default pages (their scripts on a CDN) sees no operation,
and the log shows the CDN asked for: the blockade is real.
"""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.databases import ROOT
from tests.servers import STARTUP_TIMEOUT_SECONDS, Server, clean_env, free_port

pytestmark = pytest.mark.slow

# Debian's chromium package: /usr/bin/chromium is a wrapper script whose /etc/chromium.d files
# switch on remote extensions (update checks); the browser itself takes only the flags below.
CHROMIUM = Path("/usr/lib/chromium/chromium")
BROWSER_TIMEOUT_SECONDS = 60
# What Swagger UI and ReDoc write into the page from /openapi.json: an operation's summary and a
# path template. Neither is in the HTML the service sends.
OPERATIONS = ("Create a hero", "/heroes/{hero_id}")


@pytest.fixture(scope="module")
def dead_proxy() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but never listens: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def chromium(url: str, proxy_port: int, profile: Path, *action: str) -> str:
    """Load ``url`` in headless Chromium (10 s of virtual time for the scripts to run) and return
    what it prints: the rendered DOM for ``--dump-dom``."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (.ci/run does)")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # the tests may run as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--virtual-time-budget=10000",
        "--window-size=1280,1000",
        *action,
        url,
    ]
    done = subprocess.run(
        command,
        env=clean_env(HOME=str(profile)),
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def page_requests(netlog: Path, origin: str) -> set[str]:
    """The URLs a page at ``origin`` asked for, from Chromium's network log."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return {
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job and event.get("params", {}).get("initiator") == origin
    }


def load(url: str, proxy_port: int, tmp_path: Path) -> tuple[str, set[str]]:
    """The page's DOM after its scripts ran, and the URLs the page asked for."""
    netlog = tmp_path / "netlog.json"
    dom = chromium(url, proxy_port, tmp_path / "profile", f"--log-net-log={netlog}", "--dump-dom")
    origin = url[: url.index("/", len("http://"))]
    return dom, page_requests(netlog, origin)


@pytest.fixture
def server(sqlite_databases: Any, tmp_path: Path) -> Iterator[Server]:
    with Server(sqlite_databases.create(), tmp_path, base_env=clean_env()) as server:
        yield server


ASSETS = {
    "/docs": {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"},
    "/redoc": {"/docs/assets/redoc.standalone.js"},
}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_renders_the_hero_operations_with_no_network(
    server: Server, dead_proxy: int, tmp_path: Path, page: str
) -> None:
    dom, requested = load(f"{server.base_url}{page}", dead_proxy, tmp_path)
    for text in OPERATIONS:
        assert text in dom, f"{page} rendered without {text!r}"
    local = {url.removeprefix(server.base_url) for url in requested}
    assert {*ASSETS[page], "/openapi.json"} <= local
    assert all(url.startswith("/") for url in local), requested  # nothing from elsewhere
    # What a person would see, kept in the test's tmp dir: look at it after changing the pages.
    screenshot = tmp_path / f"{page[1:]}.png"
    chromium(
        f"{server.base_url}{page}", dead_proxy, tmp_path / "profile", f"--screenshot={screenshot}"
    )
    assert screenshot.stat().st_size > 10_000  # a picture of something, not of a blank page


def cdn_docs_app() -> FastAPI:
    """FastAPI's default /docs and /redoc (scripts on a CDN) over two hero operations."""
    app = FastAPI(title="Heroes API")

    @app.post("/heroes/", summary="Create a hero")
    async def create() -> None: ...

    @app.get("/heroes/{hero_id}", summary="Read a hero")
    async def read(hero_id: int) -> None: ...

    return app


@pytest.fixture
def cdn_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "cdn-server.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", f"{__name__}:cdn_docs_app"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, env=clean_env(), stdout=output, stderr=output
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base_url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling interval, not synchronisation
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_fastapis_cdn_pages_render_nothing_here(
    cdn_server: str, dead_proxy: int, tmp_path: Path, page: str
) -> None:
    """The control: the same check fails on pages whose scripts live on a CDN."""
    dom, requested = load(f"{cdn_server}{page}", dead_proxy, tmp_path)
    assert not [text for text in OPERATIONS if text in dom]
    assert any(url.startswith("https://cdn.jsdelivr.net/") for url in requested), requested
