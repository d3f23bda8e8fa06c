"""The one gRPC client of the commands: a channel to cranectld, token metadata, error mapping.

Importing this module installs the deferred imports of :mod:`crane_cli.fastimport`
and then imports grpc and the generated protobuf module, so import it only in a
command that talks to the controller, and only once the arguments are parsed.

Every call carries a credential the CLI found, never one it made: ``authorization:
Bearer <token>`` metadata, the token coming from
:func:`crane_common.tokens.find_client_credential`, or with ``Auth.ClientCredential:
munge`` an ``x-crane-munge`` credential from the local ``munged``. With ``CraneCtld.Tls.CA``
in the client config the channel is TLS and the server's certificate must chain to that CA
and name the host (``ControlMachine``, or ``CraneCtld.Tls.ServerName``); a client
certificate is presented when one is configured (mTLS). gRPC failures become
:class:`~crane_cli.errors.CliError` with exit code 3 and upstream's messages
("Connection to CraneCtld is broken.", "Access denied.", ...); a call the controller refused
(INVALID_ARGUMENT, PERMISSION_DENIED) exits with code 4 and the controller's one-line reason.
"""

from __future__ import annotations

import os

from crane_cli import fastimport

fastimport.install()
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # grpc core logs a failed TLS handshake at INFO to stderr

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
    "RequeueJob": pb.RequeueJobReply,
    "QueryCranedInfo": pb.QueryCranedInfoReply,
    "QueryPartitionInfo": pb.QueryPartitionInfoReply,
    "ModifyNode": pb.ModifyNodeReply,
    "QueryServerInfo": pb.ServerInfoReply,
    # accounting (cacctmgr)
    "AddAccount": pb.AddAccountReply,
    "AddUser": pb.AddUserReply,
    "AddQos": pb.AddQosReply,
    "DeleteAccount": pb.DeleteAccountReply,
    "DeleteUser": pb.DeleteUserReply,
    "DeleteQos": pb.DeleteQosReply,
    "ModifyAccount": pb.ModifyAccountReply,
    "ModifyUser": pb.ModifyUserReply,
    "ModifyQos": pb.ModifyQosReply,
    "BlockAccountOrUser": pb.BlockAccountOrUserReply,
    "QueryAccountInfo": pb.QueryAccountInfoReply,
    "QueryUserInfo": pb.QueryUserInfoReply,
    "QueryQosInfo": pb.QueryQosInfoReply,
    "QueryTxnLog": pb.QueryTxnLogReply,
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
    """The bearer token to present (``$CRANE_TOKEN``, the token file, or the host token when readable)."""
    from crane_common import tokens

    found = tokens.find_client_credential(conf.host_token_file)
    return found[0] if found else None


def client_metadata(conf: ClientConfig, token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata carrying the credential (``token``, or a MUNGE credential when configured)."""
    if conf.credential == "munge" and token is None:
        from crane_cli import munge

        return ((munge.METADATA_KEY, munge.credential(conf.cluster_name)),)
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise CliError(f"Cannot read the TLS {what} {path}: {exc.strerror or exc}", EXIT_NETWORK) from None


def make_channel(conf: ClientConfig) -> grpc.Channel:
    """A channel to cranectld: TLS verifying the server when ``CraneCtld.Tls.CA`` is set, else plaintext."""
    if not conf.tls_ca:
        return grpc.insecure_channel(conf.target, options=CHANNEL_OPTIONS)
    cert_path = os.environ.get("CRANE_TLS_CERT") or conf.tls_cert
    key_path = os.environ.get("CRANE_TLS_KEY") or conf.tls_key
    cert = _read_file(cert_path, "client certificate") if cert_path and key_path else None
    key = _read_file(key_path, "client key") if cert_path and key_path else None
    creds = grpc.ssl_channel_credentials(root_certificates=_read_file(conf.tls_ca, "CA certificate"),
                                         private_key=key, certificate_chain=cert)
    options = CHANNEL_OPTIONS
    if conf.tls_server_name:
        options = (*options, ("grpc.ssl_target_name_override", conf.tls_server_name))
    return grpc.secure_channel(conf.target, creds, options=options)


class Controller:
    """A channel to cranectld; :meth:`call` makes one unary call and maps failures to exit code 3."""

    def __init__(self, conf: ClientConfig, timeout: float = DEFAULT_TIMEOUT, token: str | None = None) -> None:
        self.conf = conf
        self.timeout = timeout
        if token is None:  # with MUNGE configured only an explicit $CRANE_TOKEN replaces the credential
            token = client_token(conf) if conf.credential != "munge" else (os.environ.get("CRANE_TOKEN") or None)
        self.token = token
        self.metadata = client_metadata(conf, token)
        self._calls = 0
        self.channel = make_channel(conf)

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
            return self._callable(method)(request, timeout=self.timeout, metadata=self._fresh_metadata())
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def call_many(self, calls: list[tuple[str, object]]) -> list:
        """Issue several calls concurrently (one round trip of latency); return the replies in order."""
        futures = [self._callable(m).future(r, timeout=self.timeout, metadata=self._fresh_metadata())
                   for m, r in calls]
        try:
            return [f.result() for f in futures]
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _fresh_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata of the next call: a MUNGE credential is good for one call only (munged refuses a replay)."""
        if self.token is not None or self.conf.credential != "munge":
            return self.metadata
        self._calls += 1
        return self.metadata if self._calls == 1 else client_metadata(self.conf, None)

    def _error(self, exc: grpc.RpcError) -> CliError:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        message = rpc_error_message(code, details)
        if code == grpc.StatusCode.UNAUTHENTICATED and not self.metadata:
            message += " No token found: set $CRANE_TOKEN or save one with 'crane token issue --save'."
        elif code == grpc.StatusCode.UNAVAILABLE and self.conf.tls_ca and details:
            message += f" ({' '.join(details.split())[:300]})"
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
