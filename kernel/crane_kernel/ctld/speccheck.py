"""The checks a submission goes through field by field: numbers, names and text, the environment,
mail options and the container spec. :func:`crane_kernel.ctld.jobs.normalize_spec` and
:func:`~crane_kernel.ctld.jobs.recheck_spec` apply them; every failure is a one-line
:class:`~crane_kernel.errors.JobRejected`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sys
from typing import Any

from crane_common.mail import check_mail_user, parse_mail_types

from crane_kernel.config import ClusterConfig
from crane_kernel.errors import JobRejected

_intern = sys.intern
MAX_MEM = 1 << 60                     # 1 EiB: no node has more, and it keeps sums far from overflow
MAX_GRES = 1 << 20                    # devices of one type per node
MAX_BEGIN_AHEAD = 10 * 365 * 86400    # a begin time at most ten years ahead
_TEXT_FIELDS = {  # field -> (config key of its maximum, what it is called in errors)
    "name": ("MaxNameBytes", "job name"), "partition": ("MaxNameBytes", "partition"),
    "account": ("MaxNameBytes", "account"), "qos": ("MaxNameBytes", "QoS"),
    "submit_host": ("MaxNameBytes", "submit host"), "comment": ("MaxCommentBytes", "comment"),
    "cwd": ("MaxPathBytes", "working directory"), "submit_dir": ("MaxPathBytes", "submit directory"),
    "output": ("MaxPathBytes", "output path"), "error": ("MaxPathBytes", "error path"),
    "input": ("MaxPathBytes", "input path"), "interpreter": ("MaxPathBytes", "interpreter"),
    "export": ("MaxEnvBytes", "export list"), "extra_attr": ("MaxCommentBytes", "extra attributes"),
    "reservation": ("MaxNameBytes", "reservation"), "licenses": ("MaxCommentBytes", "license request"),
}
_OPEN_MODES = ("", "append", "truncate")
MAX_CONTAINER_PORTS = 16              # --pod-port mappings of one job
MAX_CONTAINER_DNS = 3                 # --pod-dns servers (resolv.conf reads at most three)
MAX_CONTAINER_ARGS = 256              # argv entries of a container command
_IMAGE_RE = re.compile(  # [registry[:port]/]path[:tag][@algo:hex]; lowercase path components like OCI/docker
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$")
_POD_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_CONTAINER_KEYS = ("image", "pod_name", "ports", "user", "userns", "host_network", "dns", "command")


def _has_control(text: str) -> bool:
    """True if ``text`` holds a control character (C0 incl. newline, tab and NUL; DEL; C1)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def _number(value: Any, what: str) -> float:
    """A finite positive number, or :class:`JobRejected`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise JobRejected(f"{what} must be a number") from None
    if not math.isfinite(x) or x <= 0:
        raise JobRejected(f"{what} must be a positive finite number")
    return x


def _count(value: Any, what: str, maximum: int) -> int:
    """A whole number in ``[0, maximum]`` (None/empty is 0), or :class:`JobRejected`."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise JobRejected(f"{what} must be a whole number")
    try:
        x = float(value) if not isinstance(value, int) else value
    except ValueError:
        raise JobRejected(f"{what} must be a whole number") from None
    if isinstance(x, float) and (not math.isfinite(x) or x != int(x)):
        raise JobRejected(f"{what} must be a whole number")
    x = int(x)
    if x < 0:
        raise JobRejected(f"{what} must not be negative")
    if x > maximum:
        raise JobRejected(f"{what} {x} exceeds the maximum of {maximum}")
    return x


def _check_name(value: Any, what: str, maximum: int) -> None:
    """A string of at most ``maximum`` UTF-8 bytes without control characters."""
    if not isinstance(value, str):
        raise JobRejected(f"{what} must be text")
    if len(value.encode("utf-8", "surrogatepass")) > maximum:
        raise JobRejected(f"{what} is longer than {maximum} bytes")
    if _has_control(value):
        raise JobRejected(f"{what} contains a control character (newline, NUL, ...)")


def check_text_fields(spec: dict[str, Any], cfg: ClusterConfig) -> None:
    """Refuse over-long text fields and control characters in them (limits from ``CraneCtld``)."""
    lim = cfg.CraneCtld
    for field, (key, what) in _TEXT_FIELDS.items():
        value = spec.get(field)
        if value is not None and value != "":
            _check_name(value, what, getattr(lim, key))
    cmd = spec.get("cmd_line") or ""
    if not isinstance(cmd, str) or "\x00" in cmd or len(cmd.encode("utf-8", "surrogatepass")) > lim.MaxScriptBytes:
        raise JobRejected("the command line is not text or too long")
    if spec.get("open_mode") not in (*_OPEN_MODES, None):
        raise JobRejected(f"open mode must be append or truncate, not {str(spec.get('open_mode'))[:32]!r}")


def _check_env(env: Any, cfg: ClusterConfig) -> None:
    """At most ``MaxEnvVars`` variables of ``MaxEnvBytes`` in all; names without ``=``, nothing with NUL."""
    lim = cfg.CraneCtld
    if not isinstance(env, dict):
        raise JobRejected("the environment must be a mapping")
    if len(env) > lim.MaxEnvVars:
        raise JobRejected(f"{len(env)} environment variables exceed the maximum of {lim.MaxEnvVars} "
                          "(CraneCtld.MaxEnvVars)")
    total = 0
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k or "=" in k or "\x00" in k or "\x00" in v:
            raise JobRejected("an environment variable has an invalid name or value")
        total += len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass")) + 2
    if total > lim.MaxEnvBytes:
        raise JobRejected(f"the environment ({total} bytes) exceeds the maximum of {lim.MaxEnvBytes} bytes "
                          "(CraneCtld.MaxEnvBytes)")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise JobRejected(f"container port {text[:16]!r} must be a number from 1 to 65535")
    return int(text)


def normalize_container(spec: dict[str, Any], cfg: ClusterConfig) -> None:
    """Validate and canonicalise ``spec["container"]`` (the JobSpec's ContainerSpec as a dict) in place.

    Nothing here is runtime-specific: bounded strings without control characters, an image
    reference of the usual ``[registry/]path[:tag][@digest]`` shape, ports ``N`` or ``HOST:CONTAINER``
    (1-65535), a user ``UID[:GID]`` of numbers, at most :data:`MAX_CONTAINER_DNS` DNS server IPs and
    a bounded command. An empty or missing container (a plain job) is removed from the spec.
    Raises :class:`JobRejected`.
    """
    c = spec.get("container")
    if not c:
        spec.pop("container", None)
        return
    if not isinstance(c, dict):
        raise JobRejected("the container must be a mapping")
    lim = cfg.CraneCtld
    unknown = sorted(set(c) - set(_CONTAINER_KEYS))
    if unknown:
        raise JobRejected(f"unknown container field {unknown[0][:32]!r}")
    image = c.get("image") or ""
    _check_name(image, "container image", lim.MaxPathBytes)
    if not image:
        raise JobRejected("a container job needs an image")
    if not _IMAGE_RE.match(image):
        raise JobRejected(f"container image {image[:64]!r} is not an image reference")
    out: dict[str, Any] = {"image": image}
    pod = c.get("pod_name") or ""
    if pod:
        _check_name(pod, "pod name", lim.MaxNameBytes)
        if not _POD_NAME_RE.match(pod):
            raise JobRejected(f"pod name {pod[:64]!r} must be lowercase letters, digits, '.' and '-' (at most 63)")
        out["pod_name"] = pod
    ports = c.get("ports") or []
    if not isinstance(ports, list) or len(ports) > MAX_CONTAINER_PORTS:
        raise JobRejected(f"at most {MAX_CONTAINER_PORTS} container ports")
    canon = []
    for p in ports:
        if not isinstance(p, str | int) or isinstance(p, bool):
            raise JobRejected("a container port must be N or HOST:CONTAINER")
        parts = str(p).split(":")
        if len(parts) > 2:
            raise JobRejected(f"container port {str(p)[:32]!r} must be N or HOST:CONTAINER")
        canon.append(":".join(str(_port(x)) for x in parts))
    if canon:
        out["ports"] = canon
    user = c.get("user") or ""
    if user:
        if not isinstance(user, str) or not re.fullmatch(r"[0-9]{1,10}(:[0-9]{1,10})?", user) or \
                any(int(x) > 2**32 - 2 for x in user.split(":")):
            raise JobRejected(f"container user {str(user)[:32]!r} must be UID or UID:GID (numbers)")
        out["user"] = user
    for flag in ("userns", "host_network"):
        v = c.get(flag, False)
        if not isinstance(v, bool):
            raise JobRejected(f"container {flag} must be true or false")
        if v:
            out[flag] = True
    dns = c.get("dns") or []
    if not isinstance(dns, list) or len(dns) > MAX_CONTAINER_DNS:
        raise JobRejected(f"at most {MAX_CONTAINER_DNS} container DNS servers")
    for d in dns:
        try:
            ipaddress.ip_address(d if isinstance(d, str) else "")
        except ValueError:
            raise JobRejected(f"container DNS server {str(d)[:48]!r} is not an IP address") from None
    if dns:
        out["dns"] = list(dns)
    cmd = c.get("command") or []
    if not isinstance(cmd, list) or len(cmd) > MAX_CONTAINER_ARGS:
        raise JobRejected(f"a container command has at most {MAX_CONTAINER_ARGS} arguments")
    total = 0
    for a in cmd:
        if not isinstance(a, str) or "\x00" in a:
            raise JobRejected("a container command argument is not text")
        total += len(a.encode("utf-8", "surrogatepass")) + 1
    if total > lim.MaxScriptBytes:
        raise JobRejected(f"the container command is larger than {lim.MaxScriptBytes} bytes")
    if cmd:
        out["command"] = list(cmd)
    spec["container"] = out


_MAIL_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}  # one shared tuple per set of types (at most 64)


def normalize_mail(spec: dict[str, Any], user: str) -> None:
    """Check and canonicalise ``mail_type``/``mail_user`` in place (``--mail-type``/``--mail-user``).

    Known types only (``ALL`` expanded, ``TIMELIMIT`` spelled ``TIME_LIMIT``, ``NONE`` = none),
    at most 16 names; one recipient of bounded shape (:func:`crane_common.mail.check_mail_user`).
    With types and no recipient the submitting user is mailed. A spec without mail keeps no
    mail keys (the common case costs nothing in the stored spec). Raises :class:`JobRejected`.
    """
    raw_types, mail_user = spec.get("mail_type"), spec.get("mail_user")
    if not raw_types and not mail_user:
        spec.pop("mail_type", None)
        spec.pop("mail_user", None)
        return
    try:
        if raw_types is not None and not isinstance(raw_types, str | list | tuple):
            raise ValueError("mail types must be a list of names")
        types = parse_mail_types(raw_types or ())
        if mail_user or types:
            mail_user = check_mail_user(mail_user or user)
    except ValueError as exc:
        raise JobRejected(f"invalid mail request: {exc}") from None
    if types:
        spec["mail_type"] = list(types)
    else:
        spec.pop("mail_type", None)
    spec["mail_user"] = mail_user


def mail_slot(spec: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """The job record's ``mail`` slot from a normalised spec: ``(types, recipient)``, or None (no mail)."""
    types = spec.get("mail_type")
    if not types:
        return None
    key = tuple(types)
    shared = _MAIL_TUPLES.setdefault(key, tuple(_intern(t) for t in key)) if len(_MAIL_TUPLES) < 128 else key
    return shared, _intern(spec.get("mail_user") or spec.get("user", ""))


def normalize_lifecycle(spec: dict[str, Any], now: float) -> None:
    """Check ``signal`` (``[{R|B}:]SIG[@seconds]``) and ``deadline`` (unix seconds) in place; drop them when unset.

    The deadline must lie ahead, within ten years; raises :class:`JobRejected` with a one-line reason.
    """
    from crane_common.signals import SignalSpecError, parse_warn_signal

    sig = spec.get("signal")
    if sig:
        if not isinstance(sig, str) or len(sig) > 64:
            raise JobRejected("--signal must be [{R|B}:]SIG[@seconds]")
        try:
            parse_warn_signal(sig)
        except SignalSpecError as exc:
            raise JobRejected(str(exc)) from None
    else:
        spec.pop("signal", None)
    deadline = spec.get("deadline") or 0
    if isinstance(deadline, str) and deadline.isdigit():
        deadline = int(deadline)
    if not deadline:
        spec.pop("deadline", None)
        return
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not math.isfinite(deadline):
        raise JobRejected("the deadline must be a time (unix seconds)")
    if deadline <= now:
        raise JobRejected("the deadline is in the past")
    if deadline > now + MAX_BEGIN_AHEAD:
        raise JobRejected("the deadline must be a time within the next ten years")
    spec["deadline"] = int(deadline)


def split_all_or_any(text: str, any_sep: str, what: str) -> tuple[bool, list[str]]:
    """``a,b`` (all of them) or ``a<any_sep>b`` (any one of them): ``(any_of, parts)``, the form ``-d`` and
    ``-L`` share; an empty text, or one joining with both, raises :class:`JobRejected` naming ``what``."""
    text = (text or "").strip()
    if not text:
        raise JobRejected(f"the {what} is empty")
    if "," in text and any_sep in text:
        raise JobRejected(f"a {what} joins its parts with ',' (all) or '{any_sep}' (any), not both")
    any_of = any_sep in text
    return any_of, text.split(any_sep if any_of else ",")
