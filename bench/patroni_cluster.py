"""A throwaway Patroni cluster on 127.0.0.1: one etcd and two Patroni nodes, in a temporary folder.

Everything runs as the ``postgres`` user (PostgreSQL refuses root) on free ports, with its data,
configuration and logs under one folder that ``close()`` removes, after killing every process
whose command line names that folder (etcd, Patroni, the postmasters) and the postmasters'
children. Patroni starts each postmaster detached from itself (``setsid``), so a postmaster
outlives its Patroni unless it is killed too: ``PatroniNode.kill`` kills both and every child,
as a node that loses power would stop (except that the kernel still resets its TCP connections).

Waits are polls with deadlines. The shared PostgreSQL on port 5432 is never touched: the nodes
listen on free ports and keep their sockets in the temporary folder.
"""

import asyncio
import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import httpx

SERVER_USER = "postgres"
BINDIR = Path("/usr/lib/postgresql/15/bin")
SCOPE = "heroes-drill"
LEADER_KEY = f"/service/{SCOPE}/leader"  # Patroni's leader lock in etcd (namespace /service/)
START_SECONDS = 60.0  # etcd healthy; a leader bootstrapped; a replica cloned and in sync
STOP_SECONDS = 10.0
POLL_SECONDS = 0.02
PACKAGES = {"patroni": "patroni", "etcd": "etcd-server"}  # command -> Debian package


def install() -> None:
    """Install Patroni and etcd from apt when their commands are missing (as .ci/run does for
    PgBouncer). Where apt may start services (not in a container whose policy-rc.d forbids it),
    Debian's etcd service starts on etcd's default ports; the drill's own etcd uses free ones."""
    if not (BINDIR / "postgres").exists():
        sys.exit(f"no PostgreSQL 15 in {BINDIR}: apt-get install postgresql-15")
    missing = [package for command, package in PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"the drill needs {' '.join(missing)}: apt-get install {' '.join(missing)}")
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-qq", *missing]
    subprocess.run(install, check=True, env=env, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Timing:
    """Patroni's ``bootstrap.dcs`` timing (seconds). Patroni asks for
    ``loop_wait + 2 * retry_timeout <= ttl``: a leader that cannot reach etcd for
    ``retry_timeout`` demotes itself before its lock (``ttl``) can pass to another node."""

    ttl: int = 10
    loop_wait: int = 1
    retry_timeout: int = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(condition: Callable[[], bool], what: str, seconds: float = START_SECONDS) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {seconds:g} s")
        time.sleep(POLL_SECONDS)


def _as_server_user() -> dict[str, Any]:
    """``subprocess`` arguments that run a command as the server user, set in the child itself
    (so a Popen's pid is the program's), in a session of its own."""
    user = {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}
    return {**(user if os.geteuid() == 0 else {}), "start_new_session": True}


def _server_env(home: Path) -> dict[str, str]:
    """Nothing of ours (no ``PATRONI_*``, ``PG*`` or ``HEROES_*``): a path, a locale, a home."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": f"{BINDIR}:{path}", "LANG": "C.UTF-8", "HOME": str(home)}


class Etcd:
    """A single-member etcd (v3 API) with its data in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.log_path = root / "etcd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        command = [
            "etcd",
            "--name=drill",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=drill={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=_server_env(self.root),
                stdout=log,
                stderr=subprocess.STDOUT,
                **_as_server_user(),
            )
        poll(self._healthy, "etcd healthy")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.log_path}")
        with contextlib.suppress(httpx.TransportError):
            return bool(httpx.get(f"{self.url}/health", timeout=1).json()["health"] == "true")
        return False

    def version(self) -> str:
        return str(httpx.get(f"{self.url}/version", timeout=5).json()["etcdserver"])

    async def leader(self, client: httpx.AsyncClient) -> str | None:
        """The name of the node holding the leader lock, or None (through the gRPC gateway)."""
        key = base64.b64encode(LEADER_KEY.encode()).decode()
        response = await client.post(f"{self.url}/v3/kv/range", json={"key": key}, timeout=1)
        kvs = response.raise_for_status().json().get("kvs", [])
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


class PatroniNode:
    """One Patroni node and its PostgreSQL: a folder, a PostgreSQL port, a REST port."""

    def __init__(self, name: str, root: Path, etcd: Etcd, timing: Timing) -> None:
        self.name = name
        self.root = root / name
        self.data_dir = self.root / "data"
        self.port, self.rest_port = free_port(), free_port()
        self.rest_address = f"127.0.0.1:{self.rest_port}"
        self.rest_url = f"http://{self.rest_address}"
        self.log_path = self.root / "patroni.log"
        self.etcd = etcd
        self.timing = timing
        self.process: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    async def fetch(self, sql: str, database: str = "postgres") -> list[asyncpg.Record]:
        """Run ``sql`` on this node's PostgreSQL, on a connection of its own; the rows."""
        connection = await asyncpg.connect(self.dsn(database), timeout=5)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql)
        finally:
            await connection.close()
        return rows

    def config(self) -> dict[str, Any]:
        """patroni.yml (written as JSON, which YAML reads). See bench/README.md for the why."""
        trust = ["local all all trust", "host all all 127.0.0.1/32 trust"]
        trust += ["local replication all trust", "host replication all 127.0.0.1/32 trust"]
        return {
            "scope": SCOPE,
            "name": self.name,
            "restapi": {"listen": self.rest_address, "connect_address": self.rest_address},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd.client_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": self.timing.ttl,
                    "loop_wait": self.timing.loop_wait,
                    "retry_timeout": self.timing.retry_timeout,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": False,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "wal_keep_size": "128MB",
                            "max_connections": 100,
                            "shared_buffers": "64MB",
                            # Processes die here, not the machine: the page cache survives, so
                            # fsync=off loses nothing (as in tests/pg_cluster.py).
                            "fsync": "off",
                            "full_page_writes": "off",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "no-locale", "no-sync", {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.port}",
                "connect_address": f"127.0.0.1:{self.port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(BINDIR),
                "pgpass": str(self.root / "pgpass"),
                "authentication": {
                    "superuser": {"username": SERVER_USER},
                    "replication": {"username": SERVER_USER},
                },
                "parameters": {"unix_socket_directories": str(self.root)},
                "pg_hba": trust,
                "basebackup": [{"checkpoint": "fast"}],
            },
            "watchdog": {"mode": "off"},
        }

    def start(self) -> None:
        self.root.mkdir()
        config = self.root / "patroni.yml"
        config.write_text(json.dumps(self.config(), indent=2))
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["patroni", str(config)],
                cwd=self.root,
                env=_server_env(self.root),
                stdout=log,
                stderr=subprocess.STDOUT,
                **_as_server_user(),
            )

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name}'s Patroni exited; see {self.log_path}")

    def status(self, path: str) -> tuple[int, dict[str, Any]]:
        """Patroni's answer to ``GET path`` (``/primary``, ``/replica``, ``/sync``): what a
        load balancer's health check sees. (0, {}) when the REST API does not answer."""
        try:
            response = httpx.get(f"{self.rest_url}{path}", timeout=1)
        except httpx.TransportError:
            return 0, {}
        return response.status_code, response.json()

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            if _alive(pid):
                return pid
        return None

    def kill(self) -> float:
        """SIGKILL the node: Patroni, then its postmaster and the postmaster's children (Patroni
        first, so it cannot restart PostgreSQL or hand the lock over). Returns the monotonic
        time just before the first signal; waits until they are gone."""
        assert self.process is not None
        postmaster = self.postmaster_pid()
        assert postmaster is not None, f"{self.name} runs no postmaster"
        killed_at = time.monotonic()
        self.process.kill()
        os.kill(postmaster, signal.SIGSTOP)  # no new backend between the listing and the kill
        victims = [postmaster, *_descendants(postmaster)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(STOP_SECONDS)
        poll(lambda: not any(map(_alive, victims)), f"{self.name} gone", STOP_SECONDS)
        return killed_at


class PatroniCluster:
    """etcd and two Patroni nodes in a temporary folder; ``close()`` (or leaving the ``with``
    block) kills them all and removes the folder, however far ``start()`` got."""

    def __init__(self, timing: Timing | None = None) -> None:
        timing = timing or Timing()
        self.root = Path(tempfile.mkdtemp(prefix="heroes-patroni-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        self.etcd = Etcd(self.root)
        self.nodes = [PatroniNode(f"node{n}", self.root, self.etcd, timing) for n in (1, 2)]

    def start(self) -> "PatroniCluster":
        self.etcd.start()
        for node in self.nodes:
            node.start()
        poll(self._in_sync, "a leader and a streaming synchronous replica")
        return self

    def leader(self) -> PatroniNode:
        """The node whose ``GET /primary`` answers 200."""
        for node in self.nodes:
            if node.status("/primary")[0] == 200:
                return node
        raise RuntimeError("no node answers 200 to GET /primary")

    def versions(self) -> dict[str, str]:
        patroni = subprocess.run(
            ["patroni", "--version"], capture_output=True, text=True, check=True
        )
        [(postgresql,)] = asyncio.run(self.leader().fetch("SHOW server_version"))
        return {
            "patroni": patroni.stdout.split()[-1],
            "etcd": self.etcd.version(),
            "postgresql": postgresql,
        }

    def other(self, node: PatroniNode) -> PatroniNode:
        return next(other for other in self.nodes if other is not node)

    def _in_sync(self) -> bool:
        """One node is the primary and sees the other streaming as its synchronous standby; the
        other answers 200 to ``/replica`` and ``/sync``."""
        for node in self.nodes:
            node.check_running()
        for node in self.nodes:
            code, primary = node.status("/primary")
            if code != 200:
                continue
            replica = self.other(node)
            streaming = [
                standby
                for standby in primary.get("replication", [])
                if standby.get("application_name") == replica.name
                and standby.get("state") == "streaming"
                and standby.get("sync_state") == "sync"
            ]
            return bool(streaming) and all(
                replica.status(path)[0] == 200 for path in ("/replica", "/sync")
            )
        return False

    def close(self) -> None:
        """Kill every process of the server user whose command line names our folder (etcd,
        Patroni, a postmaster, a pg_basebackup), and their descendants (a postmaster's children
        name no folder); wait for them; remove the folder."""
        try:
            ours = _processes_naming(self.root, _server_uid())
            victims = ours + [child for pid in ours for child in _descendants(pid)]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for process in (self.etcd.process, *(node.process for node in self.nodes)):
                if process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.kill()
                        process.wait(STOP_SECONDS)
            poll(lambda: not any(map(_alive, victims)), "the processes gone", STOP_SECONDS)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PatroniCluster":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def _parents() -> dict[int, int]:
    """Every process's parent pid (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, IndexError, ProcessLookupError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> list[int]:
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _server_uid() -> int:
    """The uid the cluster's processes run as."""
    return pwd.getpwnam(SERVER_USER).pw_uid if os.geteuid() == 0 else os.getuid()


def _processes_naming(folder: Path, uid: int) -> list[int]:
    """The pids of ``uid`` whose command line mentions ``folder``."""
    needle = str(folder).encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            if cmdline.parent.stat().st_uid == uid and needle in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
    return found
