"""Throwaway PostgreSQL servers for tests: a primary, its streaming replica, and PgBouncer.

Everything lives in one temporary folder owned by the server user (``postgres`` when the tests
run as root, as in CI; the current user otherwise) and listens on 127.0.0.1 only, on free ports:

- ``PgCluster(replica=False)``: one primary (``initdb``, trust auth, replication allowed,
  ``wal_level=replica``, ``fsync=off`` for speed; a crash of the server process loses nothing,
  only one of the machine would).
- ``PgCluster()``: the primary and a replica streaming from it (``pg_basebackup -R``, its
  ``application_name`` is ``replica``), with the failures a test may want: a replay delay,
  the replica stopped and started, the primary killed (SIGKILL), the replica promoted, and
  synchronous replication.
- ``PgBouncer(directory, server)``: PgBouncer in front of a server, transaction pooling.

Every wait is a poll with a deadline (``pg_ctl -w -t``, ``pg_isready``, a query), never a bare
sleep. The methods block: from a running event loop call them with ``asyncio.to_thread``.
``missing_binaries()`` says why these cannot run here (the fixtures skip with that reason).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from tests.databases import migrate
from tests.servers import free_port

SERVER_USER = "postgres"
START_SECONDS = 30.0  # a server or PgBouncer ready, a replica streaming, a promotion done
STOP_SECONDS = 10.0
Role = Literal["primary", "replica"]


def _postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries: Debian's versioned folders, else on the PATH."""
    versioned = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    candidates = [*reversed(versioned)]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
            return bindir
    return None


def _pgbouncer() -> Path | None:
    """PgBouncer: Debian installs it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def missing_binaries(*, pgbouncer: bool = False) -> str | None:
    """Why a throwaway cluster (and PgBouncer) cannot run here, or None when it can."""
    if _postgres_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)"
    if shutil.which("psql") is None and not (_bindir() / "psql").exists():
        return "no psql"
    if pgbouncer and _pgbouncer() is None:
        return "no pgbouncer (Debian: apt-get install pgbouncer)"
    return None


def _bindir() -> Path:
    bindir = _postgres_bindir()
    assert bindir is not None, missing_binaries()
    return bindir


def _as_server_user() -> dict[str, Any]:
    """``subprocess`` arguments that run a command as the server user: PostgreSQL refuses to
    run as root, PgBouncer too. Set in the child itself, so a Popen's pid is the server's."""
    if os.geteuid() != 0:
        return {}
    return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}


def _run(command: list[str], *, cwd: Path, timeout: float = START_SECONDS) -> str:
    result: subprocess.CompletedProcess[str] = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **_as_server_user(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _poll(condition: Callable[[], bool], what: str, seconds: float = START_SECONDS) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {seconds} s")
        time.sleep(0.02)


class PgServer:
    """One PostgreSQL server: its data folder, port and log, and pg_ctl on it."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.data_dir = root / name
        self.log_path = root / f"{name}.log"
        self.port = free_port()
        self._orphans: list[int] = []

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The service's URL for ``database`` on this server."""
        return f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def configure(self, **settings: str | int) -> None:
        """Append settings to postgresql.conf (the last value of a setting wins)."""
        lines = "".join(f"{name} = {_quoted(value)}\n" for name, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def pg_ctl(self, *args: str, timeout: float = START_SECONDS) -> str:
        return _run(
            [str(_bindir() / "pg_ctl"), "-D", str(self.data_dir), *args],
            cwd=self.root,
            timeout=timeout + 5,
        )

    def start(self) -> None:
        """Start and wait until it accepts connections (a standby: once it is consistent)."""
        self.pg_ctl("start", "-w", "-t", str(int(START_SECONDS)), "-l", str(self.log_path))

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        self.pg_ctl("stop", "-m", mode, "-w", "-t", str(int(STOP_SECONDS)), timeout=STOP_SECONDS)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            if _alive(pid):
                return pid
        return None

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would: no shutdown, no goodbye to clients. Its
        children exit on their own once they notice; ``close()`` waits for them (and kills any
        that linger), so nothing outlives the test."""
        pid = self.pid
        assert pid is not None, f"{self.name} is not running"
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        _poll(lambda: not _alive(pid), f"{self.name} killed", STOP_SECONDS)
        self._orphans = children

    def reap_orphans(self) -> None:
        """Wait for the killed postmaster's children; SIGKILL those that linger."""
        with contextlib.suppress(TimeoutError):
            _poll(lambda: not any(map(_alive, self._orphans)), "orphans gone", STOP_SECONDS)
        for pid in filter(_alive, self._orphans):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._orphans = []

    def is_ready(self) -> bool:
        return _ready(self.port)

    def query(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; its output, unaligned, without headers."""
        psql = shutil.which("psql") or str(_bindir() / "psql")
        result = subprocess.run(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database)],
            input=sql,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: {sql!r} failed: {result.stderr}")
        return result.stdout.strip()

    def close(self) -> None:
        """Stop it however it is (immediately: the data is thrown away next)."""
        if self.pid is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
            if (pid := self.pid) is not None:
                self._orphans += [pid, *_children(pid)]
                os.kill(pid, signal.SIGKILL)
        self.reap_orphans()


class PgCluster:
    """A primary and, unless ``replica=False``, a replica streaming from it, in a temporary
    folder that ``close()`` removes with everything in it."""

    def __init__(self, *, replica: bool = True) -> None:
        self._with_replica = replica
        self.root = Path(tempfile.mkdtemp(prefix="heroes-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        self.primary = PgServer("primary", self.root)
        self._replica = PgServer("replica", self.root) if replica else None
        self.bouncers: list[PgBouncer] = []

    @property
    def replica(self) -> PgServer:
        assert self._replica is not None, "this cluster has no replica"
        return self._replica

    def server(self, role: Role) -> PgServer:
        """The server built as the primary, or as the replica (after a promotion, too)."""
        return self.primary if role == "primary" else self.replica

    def url(self, server: Role, database: str) -> str:
        return self.server(server).url(database)

    def start(self) -> "PgCluster":
        self._init_primary()
        if self._with_replica:
            self._init_replica()
        return self

    def _init_primary(self) -> None:
        primary = self.primary
        initdb = [str(_bindir() / "initdb"), "-D", str(primary.data_dir), "-U", SERVER_USER]
        _run(
            [*initdb, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            cwd=self.root,
        )
        (primary.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
            "local replication all trust\nhost replication all 127.0.0.1/32 trust\n"
        )
        primary.configure(
            listen_addresses="127.0.0.1",
            port=primary.port,
            unix_socket_directories=str(self.root),
            wal_level="replica",
            max_wal_senders=4,
            wal_keep_size="256MB",
            hot_standby="on",
            fsync="off",
            full_page_writes="off",
            shared_buffers="32MB",
            max_connections=60,
        )
        primary.start()

    def _init_replica(self) -> None:
        replica, primary = self.replica, self.primary
        conninfo = f"host=127.0.0.1 port={primary.port} user={SERVER_USER}"
        basebackup = [str(_bindir() / "pg_basebackup"), "-D", str(replica.data_dir), "-R"]
        fast = ["-X", "stream", "--checkpoint=fast", "--no-sync"]
        _run([*basebackup, *fast, "-d", f"{conninfo} application_name=replica"], cwd=self.root)
        replica.configure(port=replica.port)
        replica.start()
        self.wait_for_streaming()

    def wait_for_streaming(self) -> None:
        """Until the primary sees the replica streaming."""
        _poll(
            lambda: (
                self.primary.query(
                    "SELECT count(*) FROM pg_stat_replication"
                    " WHERE application_name = 'replica' AND state = 'streaming'"
                )
                == "1"
            ),
            "replica streaming",
        )

    def create_database(self, name: str, *, migrated: bool = True) -> str:
        """A database on the primary, at Alembic head unless ``migrated=False``; its URL."""
        self.primary.query(f'CREATE DATABASE "{name}"')
        url = self.primary.url(name)
        if migrated:
            migrate(url)
        return url

    def set_replica_delay(self, milliseconds: int) -> None:
        """``recovery_min_apply_delay`` on the replica: it receives WAL at once but applies each
        COMMIT that late (other records are applied at once), so its reads lag the primary."""
        self.replica.query(f"ALTER SYSTEM SET recovery_min_apply_delay = '{milliseconds}ms'")
        self.replica.query("SELECT pg_reload_conf()")

    def pause_replay(self) -> None:
        """The replica goes on receiving WAL but replays none of what arrives from now on, however
        long it waits (``pg_wal_replay_pause``: checked before each record it would replay)."""
        self.replica.query("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.replica.query("SELECT pg_wal_replay_resume()")

    def stop_replica(self) -> None:
        self.replica.stop()

    def start_replica(self) -> None:
        self.replica.start()

    def kill_primary(self) -> None:
        self.primary.kill()

    def promote_replica(self) -> None:
        """Make the replica a primary; returns once it accepts writes."""
        self.replica.pg_ctl("promote", "-w", "-t", str(int(START_SECONDS)))
        _poll(lambda: self.replica.query("SELECT pg_is_in_recovery()") == "f", "promoted")

    def enable_synchronous_replication(self) -> None:
        """A COMMIT on the primary returns only once the replica has the WAL on disk
        (``synchronous_commit=on``): an acknowledged write survives losing the primary."""
        self.primary.query("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
        self.primary.query("ALTER SYSTEM SET synchronous_commit = 'on'")
        self.primary.query("SELECT pg_reload_conf()")
        _poll(
            lambda: (
                self.primary.query(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica'"
                )
                == "sync"
            ),
            "replica synchronous",
        )

    def bouncer(self, role: Role = "primary", **settings: str | int) -> "PgBouncer":
        """A started PgBouncer in front of ``role``'s server, stopped by ``close()``."""
        bouncer = PgBouncer(self.root, self.server(role), **settings)
        self.bouncers.append(bouncer)
        return bouncer.start()

    def close(self) -> None:
        """Stop everything, however far it got, and remove the folder."""
        try:
            for bouncer in self.bouncers:
                bouncer.stop()
            for server in (self._replica, self.primary):
                if server is not None:
                    server.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgCluster":
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


class PgBouncer:
    """PgBouncer on 127.0.0.1 in front of ``server``: every database, trust auth for the server
    user (listed in an auth_file), ``pool_mode`` transaction and ``default_pool_size`` server
    connections per database unless overridden (keyword arguments are [pgbouncer] settings)."""

    def __init__(self, root: Path, server: PgServer, **settings: str | int) -> None:
        self.server = server
        self.port = free_port()
        self.directory = root / f"pgbouncer-{self.port}"
        self.log_path = self.directory / "pgbouncer.log"
        self.settings: dict[str, str | int] = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.directory / "users.txt"),
            "pool_mode": "transaction",
            "default_pool_size": 2,
            "max_client_conn": 500,
            "logfile": str(self.log_path),
            "admin_users": SERVER_USER,
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PgBouncer":
        self.directory.mkdir()
        (self.directory / "users.txt").write_text(f'"{SERVER_USER}" ""\n')
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server.port}\n"
            "[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        )
        if os.geteuid() == 0:
            for path in (self.directory, *self.directory.iterdir()):
                shutil.chown(path, SERVER_USER, SERVER_USER)
        pgbouncer = _pgbouncer()
        assert pgbouncer is not None, "no pgbouncer"
        self.process = subprocess.Popen(
            [str(pgbouncer), str(ini)],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_as_server_user(),
        )
        _poll(self._ready, "pgbouncer accepting connections")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited:\n{self.log()}")
        return _ready(self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on PgBouncer's admin console (POOLS, CLIENTS, SERVERS, ...)."""
        psql = shutil.which("psql") or str(_bindir() / "psql")
        dsn = f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/pgbouncer"
        result = subprocess.run(
            [psql, "-X", "-A", "-F", "\t", "-P", "footer=off", "-d", dsn, "-c", f"SHOW {what}"],
            capture_output=True,
            text=True,
            timeout=STOP_SECONDS,
            check=True,
        )
        header, *rows = result.stdout.splitlines()
        return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _ready(port: int) -> bool:
    """Whether a server (or PgBouncer) on ``port`` accepts connections (``pg_isready``)."""
    command = [str(_bindir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    ready = subprocess.run(
        [*command, "-U", SERVER_USER, "-d", "postgres"], check=False, timeout=STOP_SECONDS
    )
    return ready.returncode == 0


def _quoted(value: str | int) -> str:
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, IndexError, ProcessLookupError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found
