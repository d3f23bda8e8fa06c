"""The client side of ``CrunStream`` shared by crun and calloc (docs/interactive.md).

One :class:`Stream` is one ``CrunStream`` call: the requests come from a queue (fed by the
stdin thread, the signal handlers and the heartbeat), the replies are read by the caller with
:meth:`Stream.replies`. gRPC failures and a stream that ends without ``ended``/``error``
become :class:`~crane_cli.errors.CliError` with exit code 3 (the messages of
:mod:`crane_cli.rpc`). Nothing here imports grpc until :meth:`Stream.open`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

from crane_cli.errors import EXIT_NETWORK, CliError

DEFAULT_HEARTBEAT = 10.0  # seconds between pings until StepAllocated.heartbeat says otherwise
STDIN_CHUNK = 64 * 1024  # the largest stdin message the protocol allows
STDIN_WINDOW = 16  # stdin messages queued but not yet handed to grpc (bounds the client's memory)
BROKEN = "Connection to CraneCtld is broken."

_CLOSE = object()


class Stream:
    """A ``CrunStream`` call: :meth:`send` queues a request, :meth:`replies` yields the replies."""

    def __init__(self, conf: object, start: object) -> None:
        self.conf = conf
        self.start = start
        self.requests: queue.Queue = queue.Queue()
        self.stdin_slots = threading.BoundedSemaphore(STDIN_WINDOW)
        self.heartbeat = DEFAULT_HEARTBEAT
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.ctld = None
        self.call = None
        self._ended = False

    # -- requests ------------------------------------------------------------------------------
    def send(self, **fields: object) -> None:
        """Queue one ``CrunRequest`` (``send(ping=True)``, ``send(signal=2)``...); never blocks."""
        if not self._closed.is_set():
            self.requests.put(fields)

    def send_stdin(self, data: bytes) -> None:
        """Queue stdin data; blocks while :data:`STDIN_WINDOW` messages wait to be sent (flow control)."""
        while not self._closed.is_set():
            if self.stdin_slots.acquire(timeout=0.5):
                self.requests.put({"stdin": data, "_slot": True})
                return

    def close(self) -> None:
        """End the request side of the stream (half-close) and stop the heartbeat."""
        if not self._closed.is_set():
            self._closed.set()
            self.requests.put(_CLOSE)
            self._wake.set()

    def _iter_requests(self) -> Iterator[object]:
        from crane_common.proto import crane_pb2 as pb

        yield pb.CrunRequest(start=self.start)
        while True:
            item = self.requests.get()
            if item is _CLOSE:
                return
            if item.pop("_slot", False):
                self.stdin_slots.release()
            if "winsize" in item:
                item["winsize"] = pb.WindowSize(**item["winsize"])
            yield pb.CrunRequest(**item)

    # -- the call ------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the channel and start the call (raises CliError, exit 3, if that fails at once)."""
        from crane_cli import rpc

        self.ctld = rpc.Controller(self.conf)
        method = self.ctld.channel.stream_stream(
            f"/{rpc.SERVICE}/CrunStream", request_serializer=rpc._serialize,
            response_deserializer=rpc.pb.CrunReply.FromString)
        try:
            self.call = method(self._iter_requests(), metadata=self.ctld._fresh_metadata())
        except rpc.grpc.RpcError as exc:
            raise self.ctld._error(exc) from None
        threading.Thread(target=self._pinger, name="crun-heartbeat", daemon=True).start()

    def replies(self) -> Iterator[object]:
        """The replies in order; the last one is ``ended`` or ``error``, else CliError (exit 3)."""
        from crane_cli import rpc

        try:
            yield from self._until_end(self.call)
            if self._ended:
                return
        except rpc.grpc.RpcError as exc:  # exit 3, or 4 for a refusal (INVALID_ARGUMENT, PERMISSION_DENIED)
            raise self.ctld._error(exc) from None
        raise CliError(f"{BROKEN} (the stream ended before the step did)", EXIT_NETWORK)

    def _until_end(self, replies: Iterator[object]) -> Iterator[object]:
        """Pass ``replies`` on up to ``ended``/``error`` (then ``_ended`` is set), following the heartbeat."""
        self._ended = False
        for reply in replies:
            kind = reply.WhichOneof("msg")  # type: ignore[attr-defined]
            if kind == "allocated" and reply.allocated.heartbeat:  # type: ignore[attr-defined]
                self.set_heartbeat(reply.allocated.heartbeat)  # type: ignore[attr-defined]
            yield reply
            if kind in ("ended", "error"):
                self._ended = True
                return

    def set_heartbeat(self, seconds: float) -> None:
        """Ping every ``seconds`` from now on."""
        self.heartbeat = max(0.05, float(seconds))
        self._wake.set()

    def _pinger(self) -> None:
        while not self._closed.is_set():
            self._wake.clear()
            if not self._wake.wait(self.heartbeat) and not self._closed.is_set():
                self.send(ping=True)

    def cancel_call(self) -> None:
        """Drop the call (the controller then ends what the stream owned)."""
        self.close()
        if self.call is not None:
            try:
                self.call.cancel()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


class ForwardedStream(Stream):
    """The same call through the login node's forwarder (``cfored``, a Unix socket): no grpc, TLS or token here.

    The forwarder learns who we are from the kernel (SO_PEERCRED) and relays to the controller on
    its own warm channel (crane_cli/cfored.py); the messages are the same, framed
    (:mod:`crane_common.frames`).
    """

    def __init__(self, conf: object, start: object, path: str) -> None:
        super().__init__(conf, start)
        self.path = path
        self.sock = None

    def open(self) -> None:
        """Connect to the forwarder and start sending (raises CliError, exit 3, if it cannot be reached)."""
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise CliError(f"{BROKEN} (the forwarder at {self.path}: {exc.strerror or exc})", EXIT_NETWORK) from None
        self.sock = sock
        threading.Thread(target=self._send_frames, name="crun-send", daemon=True).start()
        threading.Thread(target=self._pinger, name="crun-heartbeat", daemon=True).start()

    def _send_frames(self) -> None:
        from crane_common.frames import write_frame

        try:
            for request in self._iter_requests():
                write_frame(self.sock, request.SerializeToString())  # type: ignore[attr-defined]
            self.sock.shutdown(1)  # type: ignore[union-attr]  # half-close: no more requests
        except OSError:
            pass

    def replies(self) -> Iterator[object]:
        """The replies in order; the last one is ``ended`` or ``error``, else CliError (exit 3)."""
        from crane_common.frames import FrameError, read_frame
        from crane_common.proto import crane_pb2 as pb

        def frames() -> Iterator[object]:
            while True:
                data = read_frame(self.sock)  # type: ignore[arg-type]
                if data is None:
                    return
                yield pb.CrunReply.FromString(data)

        try:
            yield from self._until_end(frames())
            if self._ended:
                return
        except (OSError, FrameError, ValueError) as exc:
            raise CliError(f"{BROKEN} ({exc})", EXIT_NETWORK) from None
        raise CliError(f"{BROKEN} (the stream ended before the step did)", EXIT_NETWORK)

    def cancel_call(self) -> None:
        """Drop the connection (the forwarder drops its call; the controller ends what it owned)."""
        self.close()
        if self.sock is not None:
            try:
                self.sock.shutdown(2)
            except OSError:
                pass

    def close_socket(self) -> None:
        """Close the connection once the replies are read."""
        if self.sock is not None:
            self.sock.close()


def open_stream(conf: object, start: object) -> Stream:
    """The stream for ``start``: through the login node's forwarder when its socket is there
    (``Cfored.Socket``; ``CRANE_NO_CFORED=1`` skips it), else a direct gRPC call."""
    path = getattr(conf, "cfored_socket", "")
    if path and not os.environ.get("CRANE_NO_CFORED") and os.path.exists(path):
        return ForwardedStream(conf, start, path)
    return Stream(conf, start)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (raises OSError, e.g. BrokenPipeError)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def status_name(status: int) -> str:
    """The ``JobStatus`` name of ``status`` (``Cancelled``, ``ExceedTimeLimit``...)."""
    from crane_cli.jobfields import state_name

    return state_name(status)


def exit_status(returncode: int) -> tuple[int, int]:
    """A local child's ``Popen.returncode`` -> (raw exit code for the protocol, shell-style exit status)."""
    if returncode < 0:
        return 256 - returncode, 128 - returncode
    return returncode, returncode
