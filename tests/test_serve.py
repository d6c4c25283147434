"""``make run`` is safe to run twice and stops on SIGTERM: each server keeps its metrics in a
directory of its own (heroes_api.serve), and make's SIGTERM reaches uvicorn with any number of
workers. The real-process tests start ``make run`` itself, with an environment of their own."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heroes_api import serve
from tests.databases import ROOT
from tests.servers import STARTUP_TIMEOUT_SECONDS, clean_env, free_port, wait_until_healthy

STOP_TIMEOUT_SECONDS = 40.0  # uvicorn's graceful shutdown allows requests 30 s


class MakeRun:
    """``make run`` in a session of its own (so it and everything it starts share one process
    group), on 127.0.0.1:``port``, logging to a file."""

    def __init__(self, port: int, workers: int, database_url: str, directory: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = directory / f"make-run-{port}-{time.monotonic_ns()}.log"
        variables = [f"PORT={port}", f"WORKERS={workers}", f"METRICS_DIR={directory / 'metrics'}"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "run", "HOST=127.0.0.1", *variables],
                cwd=ROOT,
                env=clean_env(HEROES_DATABASE_URL=database_url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        wait_until_healthy(self.process, self.base_url, self.log, "make run")

    def group_alive(self) -> bool:
        """Whether any process of make's group (make, uvicorn, its workers) is still there."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill_group(self) -> None:
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def sqlite_url(sqlite_databases: Any) -> str:
    url: str = sqlite_databases.create()
    return url


@pytest.fixture
def runs() -> Iterator[list[MakeRun]]:
    """The ``make run``s a test started (``start``); whatever is left is killed at the end."""
    started: list[MakeRun] = []
    yield started
    for run in started:
        run.kill_group()


def start(runs: list[MakeRun], port: int, workers: int, url: str, directory: Path) -> MakeRun:
    run = MakeRun(port, workers, url, directory)
    runs.append(run)
    return run


def port_is_free(port: int) -> bool:
    """A new server could listen on ``port`` (SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def requests_total(base_url: str, route: str, status: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "heroes_http_requests_total"
        and sample.labels == {"method": "GET", "route": route, "status": status}
    )


def metric_dirs(directory: Path) -> list[Path]:
    root = directory / "metrics"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_make_run_stops_uvicorn_and_removes_its_metrics(
    runs: list[MakeRun], sqlite_url: str, tmp_path: Path, workers: int
) -> None:
    run = start(runs, free_port(), workers, sqlite_url, tmp_path)
    run.wait_until_healthy()
    assert httpx.get(f"{run.base_url}/heroes/1").status_code == 404
    while_running = metric_dirs(tmp_path)

    run.process.send_signal(signal.SIGTERM)  # to make alone, as a supervisor or `kill` would
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while run.group_alive() or not port_is_free(run.port):
        assert time.monotonic() < deadline, f"still running after SIGTERM:\n{run.log()}"
        run.process.poll()  # reap make once it exits, so its group can empty
        time.sleep(0.05)
    assert run.process.wait() != 0  # make reports the signal
    assert "Shutting down" in run.log()  # uvicorn's graceful shutdown ran
    assert "Finished server process" in run.log()

    if workers > 1:  # the server's own metrics directory, named after its pid, while it ran
        (own,) = while_running
        assert own.name.isdigit()
    else:
        assert while_running == []  # one worker counts in memory
    assert metric_dirs(tmp_path) == []  # and nothing is left


@pytest.mark.slow
def test_a_second_run_on_a_taken_port_leaves_the_first_servers_metrics(
    runs: list[MakeRun], sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    first = start(runs, port, 2, sqlite_url, tmp_path)
    first.wait_until_healthy()
    for _ in range(5):
        assert httpx.get(f"{first.base_url}/heroes/1").status_code == 404
    assert requests_total(first.base_url, "/heroes/{hero_id}", "404") == 5
    first_dirs = metric_dirs(tmp_path)

    second = start(runs, port, 2, sqlite_url, tmp_path)
    assert second.process.wait(timeout=STARTUP_TIMEOUT_SECONDS) != 0
    assert "address already in use" in second.log().lower()

    assert requests_total(first.base_url, "/heroes/{hero_id}", "404") == 5
    assert httpx.get(f"{first.base_url}/heroes/1").status_code == 404
    assert requests_total(first.base_url, "/heroes/{hero_id}", "404") == 6
    assert len(first_dirs) == 1
    assert metric_dirs(tmp_path) == first_dirs  # the second removed only its own directory


# heroes_api.serve in-process: what each piece does, without a server.


def test_arguments_split_into_the_metrics_directory_and_uvicorns() -> None:
    app = ["heroes_api.main:app", "--port", "1"]
    assert serve.split_arguments(["--metrics-dir", "m", *app]) == (Path("m"), app)
    assert serve.split_arguments(["--metrics-dir=m", *app]) == (Path("m"), app)
    assert serve.split_arguments(app) == (None, app)
    with pytest.raises(SystemExit, match="needs a directory"):
        serve.split_arguments(["--metrics-dir"])


def unset_multiproc_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset for this test, and unset again after it (serve() sets it; it must not leak into the
    tests that follow: it turns prometheus-client's multiprocess mode on)."""
    monkeypatch.setenv(serve.MULTIPROC_VARIABLE, "")  # recorded as absent, so undone as absent
    monkeypatch.delenv(serve.MULTIPROC_VARIABLE)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_the_server_owns_a_fresh_directory_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset_multiproc_dir(monkeypatch)
    root = tmp_path / "metrics"
    alive = root / str(os.getppid())  # another running server's: kept
    stale = root / str(dead_pid())  # a killed server's: removed
    for directory in (alive, stale):
        directory.mkdir(parents=True)
        (directory / "counter_1.db").write_bytes(b"x")
    seen: list[tuple[list[str], str]] = []

    def run(arguments: list[str]) -> None:
        directory = os.environ[serve.MULTIPROC_VARIABLE]
        assert list(Path(directory).iterdir()) == []
        seen.append((arguments, directory))

    serve.serve(["--metrics-dir", str(root), "app:app", "--workers", "2"], run)
    assert seen == [(["app:app", "--workers", "2"], str(root.resolve() / str(os.getpid())))]
    assert sorted(root.iterdir()) == [alive]
    assert (alive / "counter_1.db").exists()


def test_the_directory_goes_when_uvicorn_fails_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset_multiproc_dir(monkeypatch)
    leftover = tmp_path / str(os.getpid())  # a dead server's that had this pid before
    leftover.mkdir()
    (leftover / "counter_1.db").write_bytes(b"x")

    def run(arguments: list[str]) -> None:
        assert list(Path(os.environ[serve.MULTIPROC_VARIABLE]).iterdir()) == []
        raise SystemExit(1)  # uvicorn on a taken port

    with pytest.raises(SystemExit):
        serve.serve([f"--metrics-dir={tmp_path}", "app:app"], run)
    assert list(tmp_path.iterdir()) == []


def test_one_worker_needs_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_multiproc_dir(monkeypatch)
    seen: list[list[str]] = []
    serve.serve(["app:app", "--port", "1"], seen.append)
    assert seen == [["app:app", "--port", "1"]]
    assert serve.MULTIPROC_VARIABLE not in os.environ


def test_uvicorn_runs_here_with_its_own_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn's own command line, parsed by uvicorn in this process."""
    with pytest.raises(SystemExit) as exit_info:
        serve.run_uvicorn(["heroes_api.main:app", "--host", "0.0.0.0", "--help"])
    assert exit_info.value.code == 0
    assert "Usage: uvicorn" in capsys.readouterr().out


def test_a_directory_whose_process_belongs_to_someone_else_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process this user may not signal is still running: its directory stays."""

    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(pid)

    theirs = tmp_path / "4242"
    theirs.mkdir()
    monkeypatch.setattr(os, "kill", not_permitted)
    serve.remove_stale(tmp_path)
    assert theirs.exists()
