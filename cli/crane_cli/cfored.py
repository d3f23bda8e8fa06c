"""``cfored``: the interactive forwarder of a login node (docs/interactive.md, "The forwarder").

Run as root on a login node (as upstream's cfored). It listens on a Unix socket
(``Cfored.Socket`` in config.yaml, relative to ``CraneBaseDir``; the socket is 0666, its
directory root's and 0755) and serves crun and calloc there: each connection is one
``CrunStream``, framed (:mod:`crane_common.frames`: serialized ``CrunRequest`` in,
``CrunReply`` out) and relayed over the forwarder's one warm, authenticated gRPC channel to
the controller. A command that uses it needs neither grpc nor TLS nor a token of its own: its
start-up is a third of a direct call's.

**Trust.** Who the client is comes from the kernel, not from the client: ``SO_PEERCRED`` gives
the connecting process's uid, and the forwarder asserts it to the controller with
``x-crane-on-behalf-of: <uid>`` on a call authenticated as root (its host token or MUNGE
credential). The controller honours that header on ``CrunStream`` only, and only from root;
the step then runs as, and is authorized for, that uid. A malformed frame ends the
connection, never the daemon. Nothing a client sends is passed on unchecked: each frame must
parse as a ``CrunRequest``.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterator

from crane_common.frames import FrameError, read_frame, write_frame

from crane_cli.errors import CliError

log = logging.getLogger("cfored")

ON_BEHALF_OF = "x-crane-on-behalf-of"
MAX_SESSIONS_PER_USER = 64   # the controller has its own limit; this one keeps one user from taking every thread here
_END = object()


def socket_path(conf: object) -> str:
    """The forwarder's socket for client config ``conf`` ("" when none is configured)."""
    path = getattr(conf, "cfored_socket", "") or ""
    if path and not os.path.isabs(path):
        path = os.path.join(conf.base_dir, path)  # type: ignore[attr-defined]
    return path


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: the kernel's word)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class Forwarder:
    """The listening socket and one thread pair per connection."""

    def __init__(self, conf: object, path: str) -> None:
        from crane_cli import rpc

        self.rpc = rpc
        self.conf = conf
        self.path = path
        self.ctld = rpc.Controller(conf)
        self.method = self.ctld.channel.stream_stream(
            f"/{rpc.SERVICE}/CrunStream", request_serializer=rpc._serialize,
            response_deserializer=rpc.pb.CrunReply.FromString)
        self.sock: socket.socket | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.sessions: dict[int, int] = {}  # uid -> open sessions

    def listen(self) -> None:
        """Bind the socket: its directory root's and 0755, the socket itself 0666 (anyone may connect)."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        st = os.lstat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise SystemExit(f"cfored: {directory} must be owned by the forwarder's user and not writable by others")
        # bound and listening under a temporary name, then renamed: whoever sees the socket can connect
        tmp = f"{self.path}.{os.getpid()}"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(tmp)
        os.chmod(tmp, 0o666)
        sock.listen(128)
        os.replace(tmp, self.path)
        self.sock = sock
        log.info("cfored %d serving %s for %s", os.getpid(), self.path, self.conf.target)  # type: ignore[attr-defined]

    def serve(self) -> None:
        """Accept connections until stopped."""
        assert self.sock is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            threading.Thread(target=self.session, args=(conn,), daemon=True, name="cfored-session").start()

    def stop(self) -> None:
        """Stop accepting; remove the socket."""
        self.stopping.set()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def session(self, conn: socket.socket) -> None:
        """One client: its frames become the call's requests, the call's replies its frames."""
        pb = self.rpc.pb
        try:
            uid = peer_uid(conn)
        except OSError as exc:
            log.warning("a connection without peer credentials was refused: %s", exc)
            conn.close()
            return
        with self._lock:
            if self.sessions.get(uid, 0) >= MAX_SESSIONS_PER_USER:
                full = True
            else:
                full = False
                self.sessions[uid] = self.sessions.get(uid, 0) + 1
        if full:
            reply = pb.CrunReply(error=pb.StepError(reason=f"uid {uid} has {MAX_SESSIONS_PER_USER} sessions open here"))
            try:
                write_frame(conn, reply.SerializeToString())
            finally:
                conn.close()
            return
        try:
            self._relay(conn, uid)
        finally:
            with self._lock:
                self.sessions[uid] -= 1

    def _relay(self, conn: socket.socket, uid: int) -> None:
        pb = self.rpc.pb
        requests: queue.Queue = queue.Queue(maxsize=64)  # flow control: a full queue stops reading the client

        def client_frames() -> None:
            try:
                while True:
                    data = read_frame(conn)
                    if data is None:
                        break
                    requests.put(pb.CrunRequest.FromString(data))
            except (FrameError, OSError, ValueError) as exc:  # DecodeError is a ValueError
                log.info("uid %d: connection ended: %s", uid, exc)
            finally:
                requests.put(_END)

        def iterate() -> Iterator[object]:
            while True:
                item = requests.get()
                if item is _END:
                    return
                yield item

        reader = threading.Thread(target=client_frames, daemon=True, name="cfored-client")
        reader.start()
        call = None
        try:
            metadata = (*self.ctld._fresh_metadata(), (ON_BEHALF_OF, str(uid)))  # a fresh MUNGE credential
            call = self.method(iterate(), metadata=metadata)
            for reply in call:
                write_frame(conn, reply.SerializeToString())
        except self.rpc.grpc.RpcError as exc:
            err = self.ctld._error(exc)
            reply = pb.CrunReply(error=pb.StepError(code=0, reason=f"{err}"))
            try:
                write_frame(conn, reply.SerializeToString())
            except OSError:
                pass
        except CliError as exc:  # no credential toward the controller (munged down, ...)
            log.error("uid %d: %s", uid, exc)
            try:
                write_frame(conn, pb.CrunReply(error=pb.StepError(reason=f"the forwarder: {exc}")).SerializeToString())
            except OSError:
                pass
        except OSError as exc:  # the client went away: dropping the call ends what it owned
            log.info("uid %d: client gone: %s", uid, exc)
        finally:
            if call is not None:
                call.cancel()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def main(argv: list[str] | None = None) -> int:
    """Run the forwarder until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="cfored", description="the interactive forwarder of a login node (crun, calloc)")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("-L", "--log-file", help="log to this file instead of stderr")
    ap.add_argument("-D", "--debug-level", default="info", help="debug|info|warning|error")
    args = ap.parse_args(argv)
    logging.basicConfig(filename=args.log_file, level=getattr(logging, args.debug_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from crane_cli import clientconf

    try:
        conf = clientconf.load(args.config, use_cache=False)
    except CliError as exc:
        print(f"cfored: {exc}", file=sys.stderr)
        return 2
    path = socket_path(conf)
    if not path:
        print("cfored: no Cfored.Socket in the configuration", file=sys.stderr)
        return 2
    try:
        fwd = Forwarder(conf, path)  # its credential toward the controller: root's host token or MUNGE
        fwd.listen()
    except (CliError, OSError) as exc:
        print(f"cfored: {exc}", file=sys.stderr)
        log.error("cannot start: %s", exc)
        return 1
    done = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        done.set()
        fwd.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        fwd.serve()
    finally:
        fwd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
