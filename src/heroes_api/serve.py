"""``make run``'s launcher: ``python -m heroes_api.serve [--metrics-dir DIR] APP UVICORN_FLAGS...``.

uvicorn runs in this very process (with several workers, its supervisor does), so whatever signal
this process gets, uvicorn gets: ``make run`` execs it, and SIGTERM to make (which forwards it to
its child) shuts the server down gracefully.

With ``--metrics-dir`` (``make run`` passes it when WORKERS > 1) the workers keep their
prometheus-client multiprocess files in ``DIR/<pid>``, a directory of this server's own: made
empty here before uvicorn starts, removed when uvicorn returns (a shutdown, or a start that
failed, such as on a port already taken). So a second server never empties a running one's
metrics. Directories of servers that died without cleaning up (SIGKILL) are removed at the next
start, once their process is gone.
"""

import importlib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from heroes_api import logs
from heroes_api.preflight import settings_or_exit
from heroes_api.startup import database_or_exit

METRICS_DIR_OPTION = "--metrics-dir"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def split_arguments(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """The metrics directory (when given first) and uvicorn's own arguments."""
    if argv and argv[0] == METRICS_DIR_OPTION:
        if len(argv) < 2:
            raise SystemExit(f"{METRICS_DIR_OPTION} needs a directory")
        return Path(argv[1]), list(argv[2:])
    if argv and argv[0].startswith(METRICS_DIR_OPTION + "="):
        return Path(argv[0].partition("=")[2]), list(argv[1:])
    return None, list(argv)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(root: Path) -> None:
    """Remove the directories of servers whose process no longer runs."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.isdigit() and not _running(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def run_uvicorn(arguments: list[str]) -> None:
    """uvicorn's command line, in this process."""
    uvicorn.main(arguments, prog_name="uvicorn")


def log_like_the_service(log_format: str) -> None:
    """uvicorn's logging when its command line names no --log-config (its own defaults,
    otherwise) becomes the service's: the supervisor of several workers, which never imports
    the app, logs in HEROES_LOG_FORMAT like them."""
    uvicorn_main: Any = importlib.import_module("uvicorn.main")
    uvicorn_main.LOGGING_CONFIG = logs.logging_config(log_format)


def serve(argv: Sequence[str], run: Callable[[list[str]], None] = run_uvicorn) -> None:
    root, arguments = split_arguments(argv)
    if root is None:
        run(arguments)
        return
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    directory = (root / str(os.getpid())).resolve()
    shutil.rmtree(directory, ignore_errors=True)  # a dead server's that had this pid before us
    directory.mkdir()
    os.environ[MULTIPROC_VARIABLE] = str(directory)  # inherited by the spawned workers
    try:
        run(arguments)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover (tests run it as make run does)
    # Before uvicorn: with several workers, each would otherwise fail (and be restarted) alone.
    settings = settings_or_exit()
    logs.configure(settings.log_format)
    database_or_exit(settings)
    log_like_the_service(settings.log_format)
    serve(sys.argv[1:])
