"""Real uvicorn server processes for tests that need more than ASGITransport."""

import functools
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import httpx

from tests.databases import ROOT

STARTUP_TIMEOUT_SECONDS = 20.0


PORT_PLACEHOLDER = "{port}"


def serve_command(
    port: int, *, workers: int = 1, launcher: str = "heroes_api.serve", **make_vars: str
) -> list[str]:
    """``make run``'s command (its launcher, ``heroes_api.serve``, or plain ``uvicorn`` for an
    older release that has none), flags from the Makefile itself (``make serve-flags``), for
    this interpreter and ``port`` on 127.0.0.1; ``make_vars`` override Makefile variables."""
    flags = _serve_flags(workers, tuple(sorted(make_vars.items())))
    command = [sys.executable, "-m", launcher, "heroes_api.main:app", *flags]
    return [str(port) if arg == PORT_PLACEHOLDER else arg for arg in command]


@functools.cache
def _serve_flags(workers: int, make_vars: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """``make serve-flags`` once per test session for each set of variables, with a placeholder
    for the port (each server has its own)."""
    variables = {"HOST": "127.0.0.1", "PORT": PORT_PLACEHOLDER, "WORKERS": str(workers)}
    variables.update(make_vars)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    flags = subprocess.run(
        ["make", "--no-print-directory", "-s", "serve-flags"]
        + [f"{name}={value}" for name, value in variables.items()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = tuple(shlex.split(flags))
    assert words.count(PORT_PLACEHOLDER) == 1, words  # the port is one flag's value, alone
    return words


def release_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """The environment that runs ``root``'s source tree instead of the installed one: its
    ``src`` first on the path, and no coverage measurement (its files are not this tree's)."""
    kept = {k: v for k, v in env.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    return {**kept, "PYTHONPATH": str(root / "src")}


def clean_env(**variables: str) -> dict[str, str]:
    """An environment with nothing of the developer's in it (no ``HEROES_*``, no ``.env`` file):
    ``PATH`` and ``variables`` only."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HEROES_ENV_FILE": "", **variables}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_healthy(
    process: "subprocess.Popen[bytes]", base_url: str, log: Callable[[], str], what: str
) -> None:
    """Poll ``/health`` until it answers 200 (bounded); the log if the process exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not healthy after {STARTUP_TIMEOUT_SECONDS}s:\n{log()}")


class Server:
    """``make run``'s uvicorn command on 127.0.0.1 in its own process, logging to a file; with
    several workers, their metrics (prometheus-client multiprocess mode) in a directory of its
    own, as ``make run`` does."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *,
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
        make_vars: dict[str, str] | None = None,
        root: Path = ROOT,
        base_env: Mapping[str, str] = os.environ,
    ):
        """``root``: the source tree to serve (another release's, unpacked elsewhere);
        ``base_env``: the environment to start from (``clean_env()``: none of the developer's)."""
        self.database_url = database_url
        self.root = root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"uvicorn-{self.port}.log"
        self.env = {**base_env, "HEROES_DATABASE_URL": database_url, **(extra_env or {})}
        if workers > 1:
            metrics_dir = log_dir / f"metrics-{self.port}"
            metrics_dir.mkdir()
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        launcher = "heroes_api.serve" if (root / "src/heroes_api/serve.py").exists() else "uvicorn"
        self.command = serve_command(
            self.port, workers=workers, launcher=launcher, **(make_vars or {})
        )
        if root != ROOT:
            self.env = release_env(self.env, root)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        command = self.command
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        wait_until_healthy(self.process, self.base_url, self.log, "server")

    def client(self, connections: int = 10) -> httpx.AsyncClient:
        """A client for this server. Its idle connections expire after 1 s, well before the
        server closes them (make run's KEEP_ALIVE, 75 s): at equal timeouts a request can go out
        on a connection the server is closing."""
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=1
        )
        return httpx.AsyncClient(base_url=self.base_url, timeout=60, limits=limits)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code (SIGKILL if it hangs)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
