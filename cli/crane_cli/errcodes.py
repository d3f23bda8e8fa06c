"""English messages for the controller's ``ErrCode`` values (``crane.proto``, CraneSched's numbers).

The accounting replies (``cacctmgr``) carry a code, or a list of ``RichError`` (code plus the
entity it is about); a refused submission (``cbatch``) may carry one too. :func:`message`
turns a code into one line of text. The texts are this project's own; a code without one
here is shown by its enum name (``Unknown error occurred: ERR_...``) or number.
Standard-library only: imported only when a reply reports a failure.
"""

from __future__ import annotations

MESSAGES: dict[int, str] = {
    1: "The uid is not valid",
    2: "The requesting user is not in the account database",
    3: "No such user",
    4: "You are not allowed to do this",
    5: "The user is blocked",
    6: "The user already exists in this account",
    7: "The user may not use this account",
    8: "Invalid admin level (none, operator or admin)",
    9: "The user does not belong to this account",
    10: "No account given and the user has no default account",
    11: "No such account",
    12: "The account already exists",
    13: "No such parent account",
    14: "The account still has sub-accounts; delete them first",
    15: "The account is blocked",
    16: "No such partition",
    17: "The partition is not in the allowed list",
    18: "The partition is already in the allowed list",
    19: "The parent account does not allow this partition",
    20: "The user has no partition left in this account",
    21: "A sub-account or user still uses this partition",
    22: "No QoS is allowed in this partition",
    23: "The QoS is already allowed in this partition",
    24: "No such QoS",
    25: "The QoS already exists in the database",
    26: "The QoS is still used by an account, user or job",
    27: "The value is not a valid integer",
    28: "Invalid time limit",
    29: "The QoS is not in the allowed list",
    30: "The QoS is already in the allowed list",
    31: "The parent account does not allow this QoS",
    32: "The default QoS must be in the allowed QoS list",
    33: "The default QoS is not one the account inherits",
    34: "The QoS is already the default QoS",
    35: "A sub-account or user uses this QoS as its default",
    36: "The account's QoS list cannot be set that way",
    37: "The default QoS cannot be set that way",
    38: "The default QoS cannot be removed or changed this way",
    39: "Failed to update the account database",
    40: "The operation failed",
    41: "Not enough resources",
    42: "The entry does not exist",
    43: "Invalid number of nodes",
    44: "Invalid node list",
    45: "Invalid excluded node list",
    46: "The time limit is above the allowed maximum",
    47: "Too many CPUs per task",
    48: "Not enough nodes",
    49: "System error on the controller",
    50: "The job already exists",
    51: "The job id is beyond the allowed range",
    52: "Invalid parameter",
    53: "The operation was stopped",
    54: "Permission denied",
    55: "Connection timed out",
    56: "Connection aborted",
    57: "RPC failure",
    58: "Failed to request a token",
    59: "The stream is broken",
    60: "The gRPC stub is not valid",
    61: "Cgroup error",
    62: "Protobuf error",
    63: "Event library error",
    64: "No node is available",
    65: "The user has reached the QoS's maximum number of jobs",
    66: "The user has no privilege for this",
    67: "Not in the allowed list",
    68: "In the denied list",
    69: "eBPF error",
    70: "Supervisor error",
    71: "The controller is shutting down",
    72: "Failed to sign the certificate",
    73: "The certificate already exists",
    74: "Failed to revoke the certificate",
    75: "The identity does not match",
    76: "This needs --force",
    77: "Invalid user name",
    78: "Invalid license request",
    79: "Invalid job id",
    80: "Container runtime error",
    81: "Containers are not enabled",
    82: "The container is not ready",
    83: "A container job cannot span several nodes",
    84: "Invalid memory amount",
    85: "The step asks for more than the job has",
    86: "Invalid wckey",
    87: "The wckey already exists",
    88: "Invalid cluster",
    89: "The default wckey cannot be deleted",
    90: "No default wckey",
    91: "A dependency is missing",
    92: "Failed to insert into the database",
    93: "The job submit script (Lua) failed",
    94: "Resource not found",
    95: "Invalid argument",
    96: "The resource already exists",
    97: "The account has reached the QoS's maximum number of jobs",
    98: "The user still has jobs",
    99: "Invalid resource",
    100: "The QoS has reached its maximum number of jobs",
    101: "The value is not a valid resource list",
    102: "The user's jobs would exceed the QoS's resource limit",
    103: "The account's jobs would exceed the QoS's resource limit",
    104: "The job asks for more resources than the QoS allows per job",
    105: "Invalid deadline",
    106: "PMIx error",
    107: "The job asks for more resources than the partition allows per job",
    108: "The time limit is above the partition's maximum",
    109: "The user has reached the partition's maximum number of submitted jobs",
    110: "The account has reached the partition's maximum number of submitted jobs",
}


def _enum_name(code: int) -> str | None:
    """``ERR_...`` for ``code`` from the generated protobuf module, when it is already loaded."""
    import sys

    pb = sys.modules.get("crane_common.proto.crane_pb2")
    enum = getattr(pb, "ErrCode", None)
    if enum is None:
        return None
    try:
        return enum.Name(code)
    except ValueError:
        return None


def message(code: int) -> str:
    """One line of English for ``code`` (``"Success"`` for 0)."""
    code = int(code)
    if code == 0:
        return "Success"
    text = MESSAGES.get(code)
    if text:
        return text
    name = _enum_name(code)
    return f"Unknown error occurred: {name}" if name else f"Unknown error occurred (code {code})"


def with_reason(code: int, reason: str = "") -> str:
    """``message(code)``, followed by the controller's ``reason`` when it adds something."""
    reason = " ".join((reason or "").split())
    if not code:
        return reason or "refused"
    text = message(code)
    if reason and reason.lower() != text.lower():
        return f"{text}: {reason}"
    return text
