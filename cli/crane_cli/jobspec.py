"""From cbatch's merged options (command line over script directives) to ``JobSpec`` fields.

Pure functions: :func:`build_fields` returns a plain dict of ``crane.grpc.JobSpec``
field values, so that every argument error is found before grpc and protobuf are
imported. Option values are the raw strings of the command line or the script
(booleans for flags); all validation happens here and raises
:class:`~crane_cli.errors.CliError` with exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from crane_common.units import MemoryAmountError, parse_memory

from crane_cli.errors import arg_error
from crane_cli.lazyre import LazyRegex
from crane_cli.timefmt import TimeFormatError, parse_duration, parse_time_expr

DEFAULT_INTERPRETER = "/bin/bash"
OPEN_MODES = ("append", "truncate")
# Credentials never copied into a job's environment unless --export names them.
SECRET_ENV = ("CRANE_TOKEN",)
_ENV_NAME = LazyRegex(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Pairs of options that exclude each other; when the command line gives one of them,
# a script directive for the other is dropped (the command line overrides the script).
EXCLUSIVE_PAIRS = (("mem", "mem_per_cpu"), ("requeue", "no_requeue"))


def merge_options(directives: Mapping[str, object], cli: Mapping[str, object]) -> dict[str, object]:
    """Command-line values (not ``None``) override directive values of the same option.

    A command-line option also removes a script directive it is exclusive with
    (``--mem`` vs ``--mem-per-cpu``, ``--requeue`` vs ``--no-requeue``, and
    ``--gpus-per-node`` vs a GPU in ``--gres``).
    """
    merged = dict(directives)
    given = {k: v for k, v in cli.items() if v is not None}
    for a, b in EXCLUSIVE_PAIRS:
        if a in given:
            merged.pop(b, None)
        if b in given:
            merged.pop(a, None)
    if "gpus_per_node" in given and "gres" in merged and "gres" not in given:
        if any(k == "gpu" or k.startswith("gpu:") for k in _gres_keys(str(merged["gres"]))):
            merged.pop("gres")
    if "gres" in given and "gpus_per_node" in merged and "gpus_per_node" not in given:
        if any(k == "gpu" or k.startswith("gpu:") for k in _gres_keys(str(given["gres"]))):
            merged.pop("gpus_per_node")
    merged.update(given)
    return merged


def _gres_keys(text: str) -> list[str]:
    try:
        return list(parse_gres(text))
    except ValueError:
        return []


def _positive_int(name: str, value: object) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise arg_error(f"invalid {name} {value!r}: expected a positive integer") from None
    if n <= 0 or n > 0xFFFFFFFF:
        raise arg_error(f"invalid {name} {value!r}: must be greater than 0")
    return n


def _positive_float(name: str, value: object) -> float:
    try:
        x = float(str(value).strip())
    except ValueError:
        raise arg_error(f"invalid {name} {value!r}: expected a number") from None
    if not x > 0 or x != x or x == float("inf"):
        raise arg_error(f"invalid {name} {value!r}: must be greater than 0")
    return x


def parse_gres(text: str) -> dict[str, int]:
    """``gpu:a100:2,nic:1`` -> ``{"gpu:a100": 2, "nic": 1}``; ``gpu:2`` -> ``{"gpu": 2}``; ``gpu`` -> ``{"gpu": 1}``."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 3 or not all(parts):
            raise ValueError(f"invalid GRES {item!r}: expected name[:type]:count")
        if parts[-1].isdigit():
            count = int(parts[-1])
            key = ":".join(parts[:-1])
        elif len(parts) <= 2:
            count, key = 1, ":".join(parts)
        else:
            raise ValueError(f"invalid GRES count in {item!r}")
        if not key or count <= 0:
            raise ValueError(f"invalid GRES {item!r}: expected name[:type]:count with a count above 0")
        out[key] = out.get(key, 0) + count
    if not out:
        raise ValueError(f"invalid GRES {text!r}")
    return out


def parse_gpus_per_node(text: str) -> dict[str, int]:
    """``[type:]n[,type:n]`` -> GRES map: ``2`` -> ``{"gpu": 2}``, ``a100:2`` -> ``{"gpu:a100": 2}``."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 2 or not parts[-1].isdigit() or int(parts[-1]) <= 0 or (len(parts) == 2 and not parts[0]):
            raise ValueError(f"invalid --gpus-per-node {item!r}: expected [type:]count")
        key = f"gpu:{parts[0]}" if len(parts) == 2 else "gpu"
        out[key] = out.get(key, 0) + int(parts[-1])
    if not out:
        raise ValueError(f"invalid --gpus-per-node {text!r}")
    return out


def build_env(export: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a job gets for ``--export``.

    ``ALL`` (default): the whole submitting environment; ``NONE``: only ``CRANE_*``
    variables; ``NIL``: nothing; ``ALL,A=a,B`` / ``NONE,A=a,B`` / ``A=a,B``: the base
    set (``NONE`` when no keyword leads) plus ``A`` set to ``a`` and ``B`` copied
    from the environment. ``CRANE_*`` variables are always propagated except with ``NIL``.
    The bearer token ``$CRANE_TOKEN`` is a credential and is left out (the controller
    keeps job environments) unless the export list names it.
    """
    items = [p.strip() for p in export.split(",")] if export.strip() else ["ALL"]
    head = items[0].upper()
    if head in ("ALL", "NONE", "NIL"):
        items = items[1:]
    else:
        head = "NONE"
    if head == "ALL":
        env = dict(environ)
    elif head == "NONE":
        env = {k: v for k, v in environ.items() if k.startswith("CRANE_")}
    else:
        env = {}
    for secret in SECRET_ENV:
        env.pop(secret, None)
    for item in items:
        if not item:
            continue
        if item.upper() in ("ALL", "NONE", "NIL"):
            raise ValueError(f"invalid --export {export!r}: {item} must come first")
        name, sep, value = item.partition("=")
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid --export {export!r}: {name!r} is not a variable name")
        if sep:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


def _extra_attr(opts: Mapping[str, object]) -> str:
    raw, comment = opts.get("extra_attr"), opts.get("comment")
    if raw is None and comment is None:
        return ""
    import json

    attrs: dict = {}
    if raw is not None:
        try:
            attrs = json.loads(str(raw))
        except ValueError as exc:
            raise arg_error(f"invalid --extra-attr: not JSON ({exc})") from None
        if not isinstance(attrs, dict):
            raise arg_error("invalid --extra-attr: expected a JSON object")
    if comment is not None:
        attrs["comment"] = str(comment)
    return json.dumps(attrs, separators=(",", ":"))


def mail_fields(opts: Mapping[str, object]) -> dict[str, object]:
    """``mail_type`` (canonical list) and ``mail_user`` from ``--mail-type``/``--mail-user`` (exit 2 if bad).

    ``--mail-type NONE`` sends an empty list (no mail); without ``--mail-user`` the controller
    mails the submitting user.
    """
    mail_type, mail_user = opts.get("mail_type"), opts.get("mail_user")
    if mail_type is None and mail_user is None:
        return {}
    from crane_common.mail import check_mail_user, parse_mail_types

    out: dict[str, object] = {}
    if mail_type is not None:
        try:
            out["mail_type"] = list(parse_mail_types(str(mail_type)))
        except ValueError as exc:
            raise arg_error(f"invalid --mail-type: {exc}") from None
    if mail_user is not None:
        try:
            out["mail_user"] = check_mail_user(str(mail_user))
        except ValueError as exc:
            raise arg_error(f"invalid --mail-user: {exc}") from None
    return out


def build_fields(opts: Mapping[str, object], *, script: str, default_name: str, interpreter: str | None,
                 environ: Mapping[str, str], cwd: str, submit_host: str, cmd_line: str,
                 now: float | None = None) -> dict[str, object]:
    """Validate merged options and return the ``JobSpec`` fields (raises CliError, exit 2)."""
    f: dict[str, object] = {
        "script": script,
        "cmd_line": cmd_line,
        "submit_dir": cwd,
        "submit_host": submit_host,
        "name": str(opts.get("job_name") or default_name),
    }
    chdir = opts.get("chdir")
    f["cwd"] = os.path.normpath(os.path.join(cwd, os.path.expanduser(str(chdir)))) if chdir else cwd
    f["interpreter"] = str(opts.get("interpreter") or interpreter or DEFAULT_INTERPRETER)
    for key in ("partition", "account", "qos", "output", "error", "input", "comment", "dependency"):
        if opts.get(key) is not None:
            f[key] = str(opts[key])
    if opts.get("nodes") is not None:
        f["node_num"] = _positive_int("node count (-N)", opts["nodes"])
    if opts.get("ntasks") is not None:
        f["ntasks"] = _positive_int("task count (-n)", opts["ntasks"])
    if opts.get("ntasks_per_node") is not None:
        f["ntasks_per_node"] = _positive_int("--ntasks-per-node", opts["ntasks_per_node"])
    if opts.get("cpus_per_task") is not None:
        f["cpus_per_task"] = _positive_float("cpus per task (-c)", opts["cpus_per_task"])
    if opts.get("mem") is not None and opts.get("mem_per_cpu") is not None:
        raise arg_error("--mem and --mem-per-cpu are mutually exclusive")
    for key, field, flag in (("mem", "mem_per_node", "--mem"), ("mem_per_cpu", "mem_per_cpu", "--mem-per-cpu")):
        if opts.get(key) is not None:
            try:
                size = parse_memory(str(opts[key]))
            except MemoryAmountError as exc:
                raise arg_error(f"{flag}: {exc}") from None
            if size <= 0:
                raise arg_error(f"{flag}: memory size must be greater than 0")
            f[field] = size
    if opts.get("time") is not None:
        try:
            seconds = parse_duration(str(opts["time"]))
        except TimeFormatError as exc:
            raise arg_error(f"--time: {exc}") from None
        if seconds <= 0:
            raise arg_error("--time: the time limit must be greater than 0")
        f["time_limit"] = seconds
    if opts.get("begin") is not None:
        try:
            f["begin_time"] = parse_time_expr(str(opts["begin"]), now)
        except TimeFormatError as exc:
            raise arg_error(f"--begin: {exc}") from None
    if opts.get("deadline") is not None:
        try:
            f["deadline"] = parse_time_expr(str(opts["deadline"]), now)
        except TimeFormatError as exc:
            raise arg_error(f"--deadline: {exc}") from None
    if opts.get("signal") is not None:
        from crane_common.signals import SignalSpecError, parse_warn_signal

        try:
            parse_warn_signal(str(opts["signal"]))
        except SignalSpecError as exc:
            raise arg_error(f"-s/--signal: {exc}") from None
        f["signal"] = str(opts["signal"]).strip()
    for key, field, flag in (("nodelist", "nodelist", "-w/--nodelist"), ("exclude", "exclude", "-x/--exclude")):
        if opts.get(key) is not None:
            from crane_common import hostlist

            try:
                f[field] = hostlist.expand(str(opts[key]))
            except ValueError as exc:
                raise arg_error(f"{flag}: {exc}") from None
    gres: dict[str, int] = {}
    if opts.get("gres") is not None:
        try:
            gres = parse_gres(str(opts["gres"]))
        except ValueError as exc:
            raise arg_error(f"--gres: {exc}") from None
    if opts.get("gpus_per_node") is not None:
        if any(k == "gpu" or k.startswith("gpu:") for k in gres):
            raise arg_error("--gpus-per-node cannot be combined with a gpu in --gres")
        try:
            gres.update(parse_gpus_per_node(str(opts["gpus_per_node"])))
        except ValueError as exc:
            raise arg_error(str(exc)) from None
    if gres:
        f["gres"] = gres
    export = str(opts.get("export") or "ALL")
    try:
        f["env"] = build_env(export, environ)
    except ValueError as exc:
        raise arg_error(str(exc)) from None
    f["export"] = export
    if opts.get("open_mode") is not None:
        mode = str(opts["open_mode"]).lower()
        if mode not in OPEN_MODES:
            raise arg_error(f"invalid --open-mode {opts['open_mode']!r}: expected append or truncate")
        f["open_mode"] = mode
    if opts.get("requeue") and opts.get("no_requeue"):
        raise arg_error("--requeue and --no-requeue are mutually exclusive")
    for key in ("exclusive", "hold", "get_user_env", "requeue", "no_requeue"):
        if opts.get(key):
            f[key] = True
    extra = _extra_attr(opts)
    if extra:
        f["extra_attr"] = extra
    f.update(mail_fields(opts))
    container = container_fields(opts)
    if container:
        f["container"] = container
    return f


POD_FLAGS = (("pod_name", "--pod-name"), ("pod_port", "--pod-port"), ("pod_user", "--pod-user"),
             ("pod_userns", "--pod-userns"), ("pod_host_network", "--pod-host-network"), ("pod_dns", "--pod-dns"))


def parse_port(text: str) -> str:
    """``HOST:CONTAINER`` or ``PORT`` (1-65535 each) -> the canonical form (ValueError if bad)."""
    parts = text.strip().split(":")
    if len(parts) > 2 or not all(p.isdigit() and 0 < int(p) <= 65535 for p in parts):
        raise ValueError(f"invalid port {text!r}: expected HOST:CONTAINER or PORT (1-65535)")
    return ":".join(str(int(p)) for p in parts)


def parse_user(text: str) -> str:
    """``UID[:GID]`` (numbers) -> the canonical form (ValueError if bad)."""
    parts = text.strip().split(":")
    if len(parts) > 2 or not all(p.isdigit() and int(p) <= 0xFFFFFFFF for p in parts):
        raise ValueError(f"invalid user {text!r}: expected UID[:GID] (numbers)")
    return ":".join(str(int(p)) for p in parts)


def parse_dns(text: str) -> list[str]:
    """Comma-separated IP addresses (ValueError if one is not)."""
    import ipaddress

    out = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"invalid DNS server {item!r}: expected an IP address") from None
    if not out:
        raise ValueError(f"invalid DNS server list {text!r}")
    return out


def check_image(text: str) -> str:
    """An image reference: non-empty, no whitespace (ValueError if bad)."""
    image = text.strip()
    if not image or any(c.isspace() for c in image) or image.startswith("-"):
        raise ValueError(f"invalid image {text!r}")
    return image


def container_fields(opts: Mapping[str, object]) -> dict[str, object]:
    """``ContainerSpec`` fields from ``--pod`` and the ``--pod-*`` options (empty without ``--pod``; exit 2 if bad).

    A ``--pod-*`` option without ``--pod`` is an error.
    """
    image = opts.get("pod")
    if image is None:
        for key, flag in POD_FLAGS:
            if opts.get(key) not in (None, False):
                raise arg_error(f"{flag} requires --pod IMAGE")
        return {}
    out: dict[str, object] = {}
    try:
        out["image"] = check_image(str(image))
        if opts.get("pod_name") is not None:
            name = str(opts["pod_name"]).strip()
            if not name or any(c.isspace() or c == "/" for c in name):
                raise ValueError(f"invalid --pod-name {opts['pod_name']!r}")
            out["pod_name"] = name
        if opts.get("pod_port") is not None:
            items = [p for p in str(opts["pod_port"]).split(",") if p.strip()]
            if not items:
                raise ValueError(f"invalid port {opts['pod_port']!r}: expected HOST:CONTAINER or PORT")
            out["ports"] = [parse_port(p) for p in items]
        if opts.get("pod_user") is not None:
            out["user"] = parse_user(str(opts["pod_user"]))
        if opts.get("pod_dns") is not None:
            out["dns"] = parse_dns(str(opts["pod_dns"]))
    except ValueError as exc:
        raise arg_error(f"--pod: {exc}") from None
    for key in ("userns", "host_network"):
        if opts.get("pod_" + key):
            out[key] = True
    return out
