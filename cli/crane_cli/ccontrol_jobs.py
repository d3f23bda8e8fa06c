"""ccontrol's job actions: ``hold``, ``release``, ``suspend``, ``resume``, ``requeue`` and ``update jobid=``.

``ccontrol hold|release|suspend|resume <ids>`` and ``ccontrol requeue [hold] <ids>`` (``requeuehold``
too); ``ccontrol update jobid=<ids> key=value...`` with the keys of :data:`UPDATE_KEYS`, one
``ModifyJob`` call per key in upstream's order (priority, timelimit, the extra attributes comment,
mailuser and mailtype, deadline; then ours).

Output as upstream's: ``Jobs <id>, <id> modified successfully.``; a refused job is
``Failed to modify job: <id>. Reason: <reason>.`` on stderr behind the action's prefix
(``hold jobs failed: ``, ``change job priority failed: ``, ...) and exit code 1. ``requeue`` prints
``Job <id> requeued successfully.`` or ``Job <id> failed to requeue: <reason>`` per job (exit 4).
``--json`` prints each reply (one line per call); exit codes as upstream's JSON mode.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from crane_cli.errors import EXIT_BACKEND, EXIT_GENERIC, EXIT_OK, arg_error


def _duration(text: str) -> int:
    from crane_cli.timefmt import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise arg_error(f"ccontrol: invalid time limit {text!r}") from None


def _time(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if text.lower() in ("0", "none", "unlimited", ""):
            return 0
        from crane_cli.timefmt import parse_time_expr

        try:
            return parse_time_expr(text)
        except ValueError as exc:
            raise arg_error(f"ccontrol: invalid {what} {text!r}: {exc}") from None
    return parse


def _priority(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise arg_error(f"ccontrol: invalid priority {text!r}") from None


def _count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**32:
        raise arg_error(f"ccontrol: invalid node count {text!r}")
    return int(text)


def _text(text: str) -> str:
    return text


# key (lower case) -> (ModifyJobRequest field, value parser, failure prefix); upstream's order first
UPDATE_KEYS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "priority": ("priority", _priority, "change job priority failed: "),
    "timelimit": ("time_limit", _duration, "change job time limit failed: "),
    "comment": ("comment", _text, "change job ExtraAttrs failed: "),
    "mailuser": ("mail_user", _text, "change job ExtraAttrs failed: "),
    "mailtype": ("mail_type", _text, "change job ExtraAttrs failed: "),
    "deadline": ("deadline", _time("deadline"), "change task deadline failed: "),
    "jobname": ("name", _text, "change job name failed: "),
    "partition": ("partition", _text, "change job partition failed: "),
    "qos": ("qos", _text, "change job qos failed: "),
    "account": ("account", _text, "change job account failed: "),
    "begintime": ("begin_time", _time("begin time"), "change job begin time failed: "),
    "numnodes": ("node_num", _count, "change job node count failed: "),
    "nodelist": ("nodelist", _text, "change job node list failed: "),
    "reservation": ("reservation", _text, "change job reservation failed: "),
    "licenses": ("licenses", _text, "change job licenses failed: "),
    "arraytaskthrottle": ("array_max_concurrent", _count, "change job array throttle failed: "),
}
ALIASES = {"time_limit": "timelimit", "mail_user": "mailuser", "mail_type": "mailtype", "name": "jobname",
           "starttime": "begintime", "begin": "begintime", "nodecnt": "numnodes", "nodes": "numnodes",
           "reqnodelist": "nodelist", "mailtypes": "mailtype"}


def _ids(text: str) -> list[int]:
    from crane_cli.ccontrol import _ids as parse_ids  # one parser of job id lists (ccontrol.py)

    return parse_ids(text)


def _print_json(reply: Any) -> None:
    from crane_cli.protojson import to_json

    print(to_json(reply))


def _modified(reply: Any, prefix: str) -> bool:
    """Upstream's text: the success line, and the refusals behind ``prefix`` on stderr; True if all were done."""
    if reply.modified:
        print(f"Jobs {', '.join(str(i) for i in reply.modified)} modified successfully.")
    reasons = list(reply.reasons)
    for i, jid in enumerate(reply.not_modified):
        why = (reasons[i] if i < len(reasons) else "") or "refused"
        sys.stderr.write(f"{prefix}Failed to modify job: {jid}. Reason: {why.rstrip('.')}.\n")
    return not reply.not_modified


def simple(ctld: Any, pb: Any, action: str, words: list[str], as_json: bool) -> int:
    """``hold|release|suspend|resume <ids>``."""
    if len(words) != 1:
        raise arg_error(f"ccontrol: usage: ccontrol {action} <job ids>")
    ids = _ids(words[0])
    change = {"hold": True} if action in ("hold", "release") else {"suspend": action == "suspend"}
    if action == "release":
        change = {"hold": False}
    reply = ctld.call("ModifyJob", pb.ModifyJobRequest(job_ids=ids, **change))
    if as_json:
        _print_json(reply)
        if not reply.not_modified:
            return EXIT_OK
        return EXIT_BACKEND if action in ("suspend", "resume") else EXIT_GENERIC
    return EXIT_OK if _modified(reply, f"{action} jobs failed: ") else EXIT_GENERIC


def requeue(ctld: Any, pb: Any, words: list[str], as_json: bool, hold: bool = False) -> int:
    """``requeue [hold] <ids>``: one line per job; exit 4 if any was refused."""
    if words and words[0].lower() == "hold":
        hold, words = True, words[1:]
    if len(words) != 1:
        raise arg_error("ccontrol: usage: ccontrol requeue [hold] <job ids>")
    reply = ctld.call("RequeueJob", pb.RequeueJobRequest(job_ids=_ids(words[0]), hold=hold))
    if as_json:
        _print_json(reply)
        return EXIT_BACKEND if reply.not_requeued_jobs else EXIT_OK
    for jid in reply.requeued_jobs:
        print(f"Job {jid} requeued successfully.")
    for jid, why in sorted(reply.not_requeued_jobs.items()):
        print(f"Job {jid} failed to requeue: {why}")
    return EXIT_BACKEND if reply.not_requeued_jobs else EXIT_OK


def update(ctld: Any, pb: Any, kv: dict[str, str], as_json: bool) -> int:
    """``update jobid=<ids> key=value...``: one ModifyJob per key in :data:`UPDATE_KEYS` order; exit 1 on a refusal."""
    ids = _ids(kv["jobid"])
    wanted: dict[str, str] = {}
    for key, value in kv.items():
        if key == "jobid":
            continue
        name = ALIASES.get(key, key)
        if name not in UPDATE_KEYS:
            raise arg_error(f"ccontrol: update jobid=...: unknown key {key!r} (known: "
                            f"{', '.join(UPDATE_KEYS)})")
        wanted[name] = value
    if not wanted:
        raise arg_error(f"ccontrol: update jobid=... needs one of {', '.join(f'{k}=' for k in UPDATE_KEYS)}")
    calls = [(UPDATE_KEYS[k], parser_value) for k in UPDATE_KEYS if k in wanted
             for parser_value in (UPDATE_KEYS[k][1](wanted[k]),)]  # every value checked before any call
    ok = True
    for (field, _parse, prefix), value in calls:
        reply = ctld.call("ModifyJob", pb.ModifyJobRequest(job_ids=ids, **{field: value}))
        if as_json:
            _print_json(reply)
            ok = ok and not reply.not_modified
        else:
            ok = _modified(reply, prefix) and ok
    return EXIT_OK if ok else EXIT_GENERIC
