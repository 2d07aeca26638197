"""Stores of the tests' own, to break for real: a PostgreSQL cluster, a redis-server, small file systems.

Usage::

    with throwaway_cluster() as cluster:     # initdb + pg_ctl on a spare port
        cluster.freeze()                     # SIGSTOP the postmaster and every backend
        cluster.thaw()
        cluster.restart("fast")

    with throwaway_redis() as redis:         # redis-server without persistence
        redis.stop(); redis.start()

    with mounted("tmpfs", folder, size="8m"):  # needs root; MountFailed says why not

Each helper raises `Unavailable` with a sentence saying what is missing, for a clear skip.
The shared servers (5432, 6379) are never touched: every port here is a spare one in
20000-30000.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from .servers import free_port

POSTGRES_USER = "postgres"


class Unavailable(RuntimeError):
    """A tool or privilege a fault test needs is missing; the message says which."""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check()` until it is true; Unavailable after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise Unavailable(f"{what} did not come up within {timeout} s")


def postgres_tool(name: str) -> Path:
    """A PostgreSQL server program: on PATH, else from the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_version)
    if not candidates:
        raise Unavailable(f"{name} not found (install the PostgreSQL server to run these tests)")
    return candidates[-1]


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.parent.parent.name.split(".") if part.isdigit())


@dataclass
class PgCluster:
    """One PostgreSQL cluster in a folder of its own, run by the `postgres` user when we are root."""

    root: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "server.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", POSTGRES_USER, "--auth=trust", "-N")

    def start(self) -> None:
        self._pg_ctl("start", "-o", self._options(), "-l", str(self.log))

    def stop(self, mode: str = "fast", timeout: int = 30) -> bool:
        """Shut the server down (smart, fast or immediate); False if it still runs after `timeout`."""
        done = self._pg_ctl("stop", "-m", mode, "-t", str(timeout), check=False)
        return done.returncode == 0

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("restart", "-m", mode, "-o", self._options(), "-l", str(self.log))

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, walwriter...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *_children(postmaster)]

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections open, nothing answers (a stalled server)."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _options(self) -> str:
        # fsync off: the tests break the server, never the machine, and start-up is faster.
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.data), "-w", *args, check=check)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_tool(tool)), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", POSTGRES_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Field 4 is the parent pid; the command name (field 2) may hold spaces.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(stat.parent.name))
    return found


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """A fresh cluster on a spare port, removed afterwards (stopped immediately, thawed first)."""
    postgres_tool("initdb")
    postgres_tool("pg_ctl")
    if os.geteuid() == 0 and not _user_exists(POSTGRES_USER):
        raise Unavailable("running as root without a `postgres` user to run the cluster as")
    # Outside pytest's tmp folders: those are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="qaa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, POSTGRES_USER)
    cluster = PgCluster(root, free_port())
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.thaw()
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class RedisServer:
    """A redis-server of the tests' own, without persistence: a restart empties it."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self.answers, 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextlib.contextmanager
def throwaway_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        raise Unavailable("redis-server not found (install Redis to run these tests)")
    with tempfile.TemporaryDirectory(prefix="qaa-redis-") as folder:
        server = RedisServer(free_port(), Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def mounted(kind: str, target: Path, *, size: str) -> Iterator[Path]:
    """A small file system at `target` for the block: "tmpfs", or "ext4" in a loop-mounted image.

    Needs root (mount); Unavailable when the machine refuses.
    """
    if os.geteuid() != 0:
        raise Unavailable("mounting a small file system needs root")
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]
    else:
        image = target.with_suffix(".img")
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        _must(["mkfs.ext4", "-q", "-F", str(image)], "mkfs.ext4")
        command = ["mount", "-o", "loop", str(image), str(target)]
    _must(command, f"mounting {kind}")
    try:
        yield target
    finally:
        subprocess.run(["chattr", "-R", "-i", str(target)], capture_output=True, check=False)
        _unmount(target)


def _unmount(target: Path) -> None:
    # A failed statement that a traceback in a reference cycle still holds keeps its SQLite
    # connection's files open (a closed connection lingers until its statements are gone).
    gc.collect()
    if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _must(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise Unavailable(f"{what}: {command[0]} not found") from None
    if done.returncode != 0:
        raise Unavailable(f"{what} failed: {done.stderr.strip() or done.returncode}")


def immutable(*paths: Path, on: bool = True) -> None:
    """chattr +i (or -i): not even root may write, open for writing, create or delete there."""
    existing = [str(path) for path in paths if path.exists()]
    subprocess.run(["chattr", "+i" if on else "-i", *existing], check=True, capture_output=True)


def fill_up(folder: Path) -> Path:
    """Write a file into `folder` until its file system is full; delete the file to free it."""
    filler = folder / "filler"
    block = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return filler
                block = block[: len(block) // 2]  # down to the last byte
    finally:
        os.close(fd)


@contextlib.contextmanager
def throwaway_pgbouncer(database_url: str) -> Iterator[str]:
    """pgbouncer in transaction mode in front of `database_url`; yields the URL through it."""
    from sqlalchemy.engine import make_url

    program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(program).exists():
        raise Unavailable("pgbouncer not found (apt-get install pgbouncer to run these tests)")
    target = make_url(database_url)
    folder = Path(tempfile.mkdtemp(prefix="qaa-pgbouncer-"))
    port = free_port()
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{target.database} = host={target.host} port={target.port or 5432}"
        f" dbname={target.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    command = [program, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(folder, POSTGRES_USER)
        for path in folder.iterdir():
            shutil.chown(path, POSTGRES_USER)
        command = ["runuser", "-u", POSTGRES_USER, "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 10, f"pgbouncer on port {port}")
        yield target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --- for the tests (the fixture is registered for every test in tests/conftest.py) -------------


def missing_server(missing: Unavailable) -> NoReturn:
    """Skip a test whose server program is not installed; fail under CI, which installs it."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(str(missing))
    pytest.skip(str(missing))


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with contextlib.ExitStack() as stack:
        try:
            found = stack.enter_context(throwaway_redis())
        except Unavailable as missing:
            missing_server(missing)
        yield found
