"""Start a server under test (service or ceiling) and drive it with wrk, on separate cores."""

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Beside the running interpreter (.venv/bin under `make bench`). The server runs in ROOT and
# inherits the environment, so a PYTHONPATH pointing at another checkout's src is served too.
UVICORN = Path(sys.executable).parent / "uvicorn"
LUA = Path(__file__).with_name("wrk") / "scenario.lua"
# The service's `make run` flags; the ceiling is served with exactly the same ones.
UVICORN_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
# Server on the first core, load generator on the second, when there are two.
PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
SERVER_CORE, LOAD_CORE = "0", "1"


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if PIN else command


def raise_open_file_limit(needed: int) -> None:
    """Lift this process's soft open-file limit (children inherit it) to hold ``needed`` sockets.

    A 1,024-connection wrk run needs that many sockets in wrk and in the server; a soft limit of
    1,024 (a common default) would refuse the last few. uvicorn's listen backlog (2,048 by
    default) already holds that many pending connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if (limit := resource.getrlimit(resource.RLIMIT_NOFILE)[0]) < needed:
        print(f"open-file limit {limit} < {needed}: large connection counts may fail", flush=True)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def reset_peak_rss(self) -> None:
        """Start a new peak-RSS window (Linux clear_refs 5 resets VmHWM)."""
        # Without it VmHWM is the peak since start: still an upper bound.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc status")

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        """Resident set size now (VmRSS)."""
        return self._status_mb("VmRSS")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=60) as response:
            return json.loads(response.read())

    def settle(self, quick: float = 0.05, limit: float = 60) -> float:
        """Wait until /health answers within ``quick`` seconds twice in a row; returns the seconds
        waited.

        When wrk stops, requests it sent are still queued in the server (at 1,024 connections,
        seconds of them); they finish even though their clients are gone. /health queries the
        database through the same pool, so quick answers mean that backlog has drained and the
        next run starts on an idle server. (While that backlog is longer than the health check's
        own timeout, /health answers 503: not settled yet.) A one-hero page is asked too: on
        PostgreSQL /health has a pooled connection of its own and answers at once while the
        page batcher still works through deep pages left over from the previous run.
        """
        started = time.monotonic()
        streak = 0
        while streak < 2 and time.monotonic() - started < limit:
            asked = time.monotonic()
            try:
                for path in ("/health", "/heroes/?limit=1"):
                    with urllib.request.urlopen(f"{self.url}{path}", timeout=limit) as response:
                        response.read()
            except urllib.error.HTTPError:  # 503: its query timed out behind the backlog
                streak = 0
                continue
            streak = streak + 1 if time.monotonic() - asked < quick else 0
        return time.monotonic() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# The access log stays off unless a variant sets it: releases before the app set up its own
# logging wrote none under plain uvicorn (no handler), so results compare across releases. What
# the access log costs is measured on its own (README, "Cost of metrics and logs").
QUIET = {"HEROES_ACCESS_LOG": "false"}


def start_server(app: str, port: int, env: dict[str, str], log: Path) -> Server:
    """Run ``uvicorn app`` with the service's flags and wait until /health answers 200."""
    command = [str(UVICORN), app, "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS]
    with log.open("ab") as output:
        process = subprocess.Popen(
            pinned(SERVER_CORE, command),
            cwd=ROOT,
            env={**os.environ, **QUIET, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{app} did not become healthy in 30 s; see {log}")


def run_wrk(
    url: str,
    scenario: str,
    *,
    seconds: float,
    connections: int,
    max_id: int,
    offsets: tuple[int, int] = (0, 900),
    age_modulus: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, float]:
    """One wrk run of a scenario; returns the numbers scenario.lua's done() reports.

    ``age_modulus``: hero n's age is n % age_modulus (bench.databases.AGE_MODULUS); the
    age_range scenario needs it. ``extra_env``: more BENCH_* settings for scenario.lua.
    """
    env = {
        **os.environ,
        **(extra_env or {}),
        "BENCH_SCENARIO": scenario,
        "BENCH_MAX_ID": str(max_id),
        "BENCH_MIN_OFFSET": str(offsets[0]),
        "BENCH_MAX_OFFSET": str(offsets[1]),
    }
    if age_modulus is not None:
        env["BENCH_AGE_MODULUS"] = str(age_modulus)
    # One wrk thread on its own core outruns this server many times over. The long timeout
    # lets slow responses show up in the latency percentiles instead of vanishing as timeouts.
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    result = subprocess.run(pinned(LOAD_CORE, command), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            return raw
    raise RuntimeError(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
