"""The one gRPC client of the commands: a channel to cranectld, token metadata, error mapping.

Importing this module installs the deferred imports of :mod:`crane_cli.fastimport`
and then imports grpc and the generated protobuf module, so import it only in a
command that talks to the controller, and only once the arguments are parsed.

Every call carries ``authorization: Bearer <token>`` metadata, the token coming from
:func:`crane_common.tokens.find_client_token`. gRPC failures become
:class:`~crane_cli.errors.CliError` with exit code 3 and upstream's messages
("Connection to CraneCtld is broken.", "Access denied.", ...); a call the controller refused
(INVALID_ARGUMENT, PERMISSION_DENIED) exits with code 4 and the controller's one-line reason.
"""

from __future__ import annotations

from crane_cli import fastimport

fastimport.install()

import grpc  # noqa: E402

fastimport.install(fastimport.GRPC_LATE_BAGGAGE)
from crane_common.proto import crane_pb2 as pb  # noqa: E402

from crane_cli.clientconf import ClientConfig  # noqa: E402
from crane_cli.errors import EXIT_BACKEND, EXIT_NETWORK, CliError  # noqa: E402

SERVICE = "crane.grpc.CraneCtld"
DEFAULT_TIMEOUT = 30.0

# method -> reply message class (requests are passed in already built)
REPLIES = {
    "SubmitBatchJob": pb.SubmitBatchJobReply,
    "SubmitBatchJobs": pb.SubmitBatchJobsReply,
    "QueryJobsInfo": pb.QueryJobsInfoReply,
    "CancelJob": pb.CancelJobReply,
    "ModifyJob": pb.ModifyJobReply,
    "QueryCranedInfo": pb.QueryCranedInfoReply,
    "QueryPartitionInfo": pb.QueryPartitionInfoReply,
    "ModifyNode": pb.ModifyNodeReply,
    "QueryServerInfo": pb.ServerInfoReply,
}

CHANNEL_OPTIONS = (
    ("grpc.enable_http_proxy", 0),  # a login node's http_proxy must not capture controller traffic
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
)

_STATUS_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "Connection to CraneCtld is broken.",
    grpc.StatusCode.UNAUTHENTICATED: "Access denied.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Request timeout.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "Response too large.",
}


# the controller understood the call and refused it: exit 4 ("replied not-ok"), its reason shown
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT: "Invalid argument",
    grpc.StatusCode.PERMISSION_DENIED: "Permission denied",
}


def rpc_error_message(code: grpc.StatusCode | None, details: str | None) -> str:
    """The one-line message shown for a failed call with gRPC status ``code``."""
    fixed = _STATUS_MESSAGES.get(code)  # type: ignore[arg-type]
    if fixed:
        return fixed
    refusal = _REFUSALS.get(code)  # type: ignore[arg-type]
    if refusal:
        text = " ".join((details or "").split())[:500]
        return text if text.lower().startswith(refusal.lower()) else f"{refusal}: {text or 'refused'}"
    name = code.name if code is not None else "UNKNOWN"
    return f"RPC to CraneCtld failed ({name}): {details or 'no details'}"


def client_token(conf: ClientConfig) -> str | None:
    """The bearer token to present (``$CRANE_TOKEN``, the token file, or one minted from a readable key)."""
    fastimport.install(fastimport.TOKEN_BAGGAGE)
    from crane_common import tokens

    return tokens.find_client_token(conf.key_file)


class Controller:
    """A channel to cranectld; :meth:`call` makes one unary call and maps failures to exit code 3."""

    def __init__(self, conf: ClientConfig, timeout: float = DEFAULT_TIMEOUT, token: str | None = None) -> None:
        self.conf = conf
        self.timeout = timeout
        self.token = token if token is not None else client_token(conf)
        self.metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        self.channel = grpc.insecure_channel(conf.target, options=CHANNEL_OPTIONS)

    def _callable(self, method: str):  # noqa: ANN202 - grpc multicallable
        reply_cls = REPLIES[method]
        return self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=_serialize,
            response_deserializer=reply_cls.FromString,
        )

    def call(self, method: str, request):  # noqa: ANN001, ANN201 - protobuf messages
        """Call ``method`` with ``request``; return the reply or raise :class:`CliError` (exit 3)."""
        try:
            return self._callable(method)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def call_many(self, calls: list[tuple[str, object]]) -> list:
        """Issue several calls concurrently (one round trip of latency); return the replies in order."""
        futures = [self._callable(m).future(r, timeout=self.timeout, metadata=self.metadata) for m, r in calls]
        try:
            return [f.result() for f in futures]
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> CliError:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        message = rpc_error_message(code, details)
        if code == grpc.StatusCode.UNAUTHENTICATED and not self.token:
            message += " No token found: set $CRANE_TOKEN or save one with 'crane token issue --save'."
        elif code == grpc.StatusCode.UNAUTHENTICATED and details:
            message += f" ({details})"
        return CliError(message, EXIT_BACKEND if code in _REFUSALS else EXIT_NETWORK)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serialize(message) -> bytes:  # noqa: ANN001
    return message.SerializeToString()
