"""Upstream's ``--json``: our replies translated to protojson of upstream CraneSched's messages.

Our API (``crane.proto``) is not upstream's: ``QueryJobsInfoReply.jobs`` is upstream's
``job_info_list``, ``JobInfo.user`` its ``username``, times are unix seconds where upstream has
``Timestamp``/``Duration`` messages, and so on. Tools written for upstream parse its JSON, so
every ``--json`` path prints upstream's shape (``/work/shared/reference/cranesched-json.md`` §1-2,
summarised in docs/cli.md "JSON output"): one function per upstream message, built from our
reply, giving a dict whose keys are upstream's field names in declaration order and whose values
are already in protojson's encoding:

* ``int64``/``uint64`` as decimal strings, ``int32``/``uint32`` as numbers, enums by name;
* ``Timestamp`` as RFC 3339 UTC (``"2024-01-01T00:00:00Z"``), ``Duration`` as ``"<n>s"``
  (unlimited: ``"315576000000s"``);
* fields with their default value are present, message fields only when set, one member of a
  ``oneof`` only, maps sorted (integer keys numerically).

Where our reply has more than upstream's message, the extra fields follow upstream's under names
upstream's message does not use (``comment``, ``stdout_path``, ``reason`` ...), encoded by the same
rules; upstream's keys are never renamed. :func:`dumps` writes the compact one-line form Go's
protojson prints (no space after ``:`` or ``,``; whole doubles without a decimal point).
:func:`translate` picks the function for a reply by its message name (``protojson.to_json`` uses it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from crane_cli.errors import EXIT_FORMAT, CliError

MAX_DURATION = 315576000000          # protojson's Duration limit, upstream's "unlimited" time limit
MAX_TIMESTAMP = 253402300799         # 9999-12-31T23:59:59Z
MIN_TIMESTAMP = -62135596800         # 0001-01-01T00:00:00Z
UINT32_MAX = 0xFFFFFFFF

JOB_STATUS = {0: "Pending", 1: "Running", 2: "Completed", 3: "Failed", 4: "ExceedTimeLimit", 5: "Cancelled",
              6: "OutOfMemory", 7: "Configuring", 8: "Starting", 9: "Completing", 10: "Suspended", 11: "Deadline",
              15: "Invalid"}
JOB_TYPE = {0: "Interactive", 1: "Batch", 2: "Container"}
ACTIVE_STATES = frozenset({0, 1, 7, 8, 9, 10})  # held in the controller's memory (upstream: elapsed_time is set)
STEP_PRIMARY, STEP_COMMON = "PRIMARY", "COMMON"
DEPENDENCY_TYPE = {"after": "AFTER", "afterany": "AFTER_ANY", "afterok": "AFTER_OK", "afternotok": "AFTER_NOT_OK"}
NEVER_SATISFIED = "DependencyNeverSatisfied"
ERR_GENERIC_FAILURE = "ERR_GENERIC_FAILURE"


# -- encodings (§1.2) ---------------------------------------------------------------------------

def u64(value: int) -> str:
    """``int64``/``uint64``: a JSON string of the decimal value."""
    return str(int(value))


def u32(value: float) -> int:
    """A value for a ``uint32`` field: truncated and clamped to 0..4294967295 (upstream truncates priority)."""
    return min(UINT32_MAX, max(0, int(value)))


def enum_name(names: dict[int, str], number: int) -> str | int:
    """An enum value by name; a number the enum does not define stays a bare integer (protojson)."""
    return names.get(int(number), int(number))


def timestamp(seconds: float) -> str:
    """``google.protobuf.Timestamp``: RFC 3339 in UTC with ``Z``, 0/3/6/9 fraction digits as needed."""
    whole = int(seconds // 1)
    if not MIN_TIMESTAMP <= whole <= MAX_TIMESTAMP:
        raise CliError(f"Failed to marshal proto message: timestamp {seconds} is out of range", EXIT_FORMAT)
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:  # rounded up to the next second
        whole, nanos = whole + 1, 0
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) if whole >= 0 else _before_epoch(whole)
    return text + _fraction(nanos) + "Z"


def _before_epoch(whole: int) -> str:
    import datetime

    moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=whole)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"


def _fraction(nanos: int) -> str:
    if not nanos:
        return ""
    for digits, unit in ((3, 1_000_000), (6, 1_000)):
        if nanos % unit == 0:
            return f".{nanos // unit:0{digits}d}"
    return f".{nanos:09d}"


def duration(seconds: float) -> str:
    """``google.protobuf.Duration``: seconds with an ``s`` suffix, clamped to protojson's range."""
    seconds = max(-MAX_DURATION, min(MAX_DURATION, seconds))
    whole = int(seconds)
    nanos = abs(int(round((seconds - whole) * 1e9)))
    if nanos >= 1_000_000_000:  # rounded up to the next second
        whole, nanos = whole + (1 if seconds > 0 else -1), 0
    sign = "-" if seconds < 0 and whole == 0 and nanos else ""
    return f"{sign}{whole}{_fraction(nanos)}s"


def time_limit(seconds: int) -> str:
    """A job's time limit as upstream's Duration: 0 (none) and anything beyond the maximum are unlimited."""
    return duration(MAX_DURATION if not seconds or seconds >= MAX_DURATION else seconds)


def _double(value: float) -> str:
    """A double as Go's protojson prints it: shortest round-trip form, ``e`` below 1e-6 and from 1e21."""
    if value != value:
        return '"NaN"'
    if value in (float("inf"), float("-inf")):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    magnitude = abs(value)
    if magnitude and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent.startswith("-0"):
            exponent = "-" + exponent[2:]
        return f"{mantissa}e{exponent}"
    return format(Decimal(repr(value)).normalize(), "f")


def dumps(value: Any) -> str:
    """Compact JSON as Go's protojson writes it: no spaces, raw UTF-8, doubles in Go's form."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_double(value))
    elif value is None:
        out.append("null")
    else:
        out.append(json.dumps(str(value), ensure_ascii=False))


# -- shared sub-messages (§2.3) -------------------------------------------------------------------

def parse_gres(text: str) -> dict[str, dict[str, int]]:
    """``"gpu:a100:2,gpu:1,nic:1"`` -> ``{"gpu": {"a100": 2, "": 1}, "nic": {"": 1}}`` (ours: name[:type]:count)."""
    out: dict[str, dict[str, int]] = {}
    for item in (text or "").split(","):
        fields = item.strip().split(":")
        if len(fields) < 2 or not fields[-1].isdigit():
            continue
        name, kind = fields[0], ":".join(fields[1:-1])
        out.setdefault(name, {})
        out[name][kind] = out[name].get(kind, 0) + int(fields[-1])
    return out


def gres_map(gres: dict[str, dict[str, int]], factor: int = 1) -> dict:
    """``GresMap``: ``name_gres_map`` name -> ``GresCount{total, specified}`` (counts times ``factor``)."""
    entries = {}
    for name in sorted(gres):
        kinds = gres[name]
        entries[name] = {"total": u64(sum(kinds.values()) * factor),
                         "specified": {k: u64(v * factor) for k, v in sorted(kinds.items()) if k}}
    return {"name_gres_map": entries}


def resource_view(cpu: float, mem: int, gres: dict[str, dict[str, int]] | None = None, factor: int = 1) -> dict:
    """``ResourceView``: CPU cores, memory (and memory+swap: the same limit, as upstream's cbatch sets it), gres."""
    return {"cpu_count": float(cpu), "memory_bytes": u64(mem), "memory_sw_bytes": u64(mem),
            "gres_map": gres_map(gres or {}, factor)}


def _expand(hosts: str) -> list[str]:
    from crane_common import hostlist

    if not hosts:
        return []
    try:
        return hostlist.expand(hosts)
    except ValueError:
        return [h for h in hosts.split(",") if h]


def array_spec(text: str) -> dict | None:
    """``ArraySpec`` of ``--array`` as submitted: ``1-100:2%10`` -> start, end, stride, max_concurrent.

    A list (``1,5,9``) has no stride: its first and last index are ``start`` and ``end`` (our own
    ``array_spec_text`` holds the whole list). None when ``text`` is not an array.
    """
    spec, _, limit = (text or "").partition("%")
    values: list[int] = []
    stride = None
    for part in [p for p in spec.split(",") if p]:
        bounds, _, step = part.partition(":")
        low, _, high = bounds.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or (step and not step.isdigit()):
            return None
        values += [int(low), int(high or low)]
        if step and "," not in spec:
            stride = int(step)
    if not values:
        return None
    out: dict = {"start": min(values), "end": max(values)}
    if stride is not None:
        out["stride"] = stride
    if limit.isdigit():
        out["max_concurrent"] = int(limit)
    return out


_DELAY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _delay_seconds(text: str) -> int:
    """A dependency's ``+delay``: minutes, or a number with ``s``/``m``/``h``/``d`` (0 when malformed)."""
    text = text.strip().lower()
    unit = _DELAY_UNITS.get(text[-1:], 0) if text and not text[-1].isdigit() else 60
    digits = text[:-1] if text and not text[-1].isdigit() else text
    return int(digits) * unit if digits.isdigit() else 0


def dependency_status(text: str, pending_reason: str) -> dict:
    """``DependencyStatus`` from our dependency text (``afterok:1:2+10,afterany:3``; ``?`` joins an OR).

    ``pending`` lists the conditions upstream's enum can express (after, afterany, afterok,
    afternotok; ``+N`` is a delay in minutes, ``+Ns`` ... with a unit), ``is_or`` is set for a
    ``?`` list; the ready-time member is ``infinite_future`` when the job's reason is ``DependencyNeverSatisfied``, else
    ``infinite_past`` (waiting for the parents).
    """
    is_or = "?" in text
    pending = []
    for part in text.split("?" if is_or else ","):
        kind, _, ids = part.strip().partition(":")
        name = DEPENDENCY_TYPE.get(kind.lower())
        if name is None:
            continue
        for item in ids.split(":"):
            job, _, delay = item.partition("+")
            job = job.split("_")[0]
            if job.isdigit():
                pending.append({"job_id": u32(int(job)), "type": name, "delay_seconds": u64(_delay_seconds(delay))})
    status: dict = {"pending": pending, "is_or": is_or}
    if pending_reason == NEVER_SATISFIED:
        status["infinite_future"] = True
    else:
        status["infinite_past"] = True
    return status


def pod_meta(job: Any) -> dict:
    """``PodJobAdditionalMeta`` of a container job (our ``ContainerSpec``)."""
    c = job.container
    user, _, group = (c.user or "").partition(":")
    mode = "NODE" if c.host_network else "POD"
    ports = []
    for spec in c.ports:
        host, _, inner = spec.partition(":")
        host, inner = (host, inner) if inner else (host, host)
        if host.isdigit() and inner.isdigit():
            ports.append({"protocol": "TCP", "container_port": int(inner), "host_port": int(host), "host_ip": ""})
    return {"name": c.pod_name or f"job-{job.job_id}", "labels": {}, "annotations": {},
            "namespace": {"network": mode, "pid": "POD", "ipc": "POD", "target_id": ""},
            "userns": bool(c.userns), "run_as_user": u32(int(user)) if user.isdigit() else u32(job.uid),
            "run_as_group": u32(int(group)) if group.isdigit() else u32(job.gid), "ports": ports,
            "dns_servers": list(c.dns), "image": c.image}


# -- jobs (§2.2) -------------------------------------------------------------------------------------

def _ntasks(job: Any) -> int:
    return max(1, job.node_num * max(1, job.ntasks_per_node)) if job.node_num else 0


def _end_time(job: Any) -> str:
    """Upstream's ``end_time``: the expected end for a running job (start + limit, capped at 9999-12-31)."""
    end = job.end_time
    if not end and job.status in ACTIVE_STATES and job.status != 0 and job.start_time > 0:
        end = MAX_TIMESTAMP if not job.time_limit else job.start_time + job.time_limit + job.suspended_seconds
    return timestamp(min(end, MAX_TIMESTAMP))


def extra_attr(job: Any) -> str:
    """``extra_attr``: upstream's JSON text of extra attributes (``comment``); ``""`` when there is none."""
    return json.dumps({"comment": job.comment}, ensure_ascii=False, separators=(",", ":")) if job.comment else ""


def job_info(job: Any, now: float | None = None) -> dict:
    """``JobInfo`` (every upstream field, in declaration order), then our own fields."""
    now = time.time() if now is None else now
    gres = parse_gres(job.gres)
    pending = job.status == 0
    running = job.start_time > 0 and not pending
    out: dict = {
        "type": enum_name(JOB_TYPE, job.type), "job_id": job.job_id, "name": job.name, "partition": job.partition,
        "uid": job.uid, "gid": job.gid, "time_limit": time_limit(job.time_limit),
        "start_time": timestamp(job.start_time), "end_time": _end_time(job), "submit_time": timestamp(job.submit_time),
        "account": job.account, "node_num": job.node_num, "cmd_line": job.cmd_line, "cwd": job.cwd,
        "username": job.user, "qos": job.qos,
        "req_total_res_view": resource_view(job.req_cpus, job.req_mem_per_node * job.node_num, gres, job.node_num),
        "licenses_count": {k: u32(v) for k, v in sorted(job.licenses.items())},
        "req_nodes": _expand(job.req_nodes), "exclude_nodes": _expand(job.exclude_nodes),
        "extra_attr": extra_attr(job), "reservation": job.reservation,
    }
    if job.HasField("container"):
        out["pod_meta"] = pod_meta(job)
    out["step_info_list"] = [step_info(s, job, now) for s in job.step_info_list]
    if job.dependency:
        out["dependency_status"] = dependency_status(job.dependency, job.pending_reason)
    out.update({"held": job.held, "status": enum_name(JOB_STATUS, job.status), "exit_code": job.exit_code,
                "priority": u32(job.priority)})
    if pending:
        out["pending_reason"] = job.pending_reason
    else:
        out["craned_list"] = job.craned_list
    if job.status in ACTIVE_STATES:
        out["elapsed_time"] = duration(job.elapsed if running else 0)
    out.update({
        "execution_node": [] if pending else _expand(job.craned_list), "exclusive": job.exclusive,
        "allocated_res_view": resource_view(job.alloc_cpus, job.alloc_mem_per_node * job.node_num,
                                            gres if job.alloc_cpus else {}, job.node_num),
        "wckey": "", "env": {}, "submit_hostname": job.submit_host, "ntasks": _ntasks(job),
    })
    if job.deadline:
        out["deadline_time"] = timestamp(job.deadline)
    out.update({"requeue_count": job.requeue_count, "requeue_if_failed": False})
    spec = array_spec(job.array_spec) if job.array_spec else None
    if spec is not None:
        out["array_spec"] = spec
    if job.array_job_id and job.array_job_id != job.job_id:  # a task (the array's own record has array_spec)
        out["array_task"] = {"array_job_id": job.array_job_id, "task_id": job.array_task_id}
    # ours, beyond upstream's JobInfo
    out.update({
        "reason": job.pending_reason, "comment": job.comment, "stdout_path": job.stdout_path,
        "stderr_path": job.stderr_path, "gres": job.gres, "cpus_per_task": float(job.cpus_per_task),
        "ntasks_per_node": job.ntasks_per_node, "usage_cpu_ms": u64(job.usage_cpu_ms),
        "usage_mem_peak": u64(job.usage_mem_peak), "signal": job.signal,
        "suspended_seconds": u64(job.suspended_seconds), "dependency": job.dependency,
        "array_spec_text": job.array_spec, "array_pending": job.array_pending, "preempted_by": job.preempted_by,
    })
    return out


def step_info(step: Any, job: Any, now: float | None = None) -> dict:
    """``StepInfo`` of one step of ``job`` (our step 0 is the job's primary step: the batch script)."""
    now = time.time() if now is None else now
    active = step.status in ACTIVE_STATES
    elapsed = step.elapsed or (max(0, int(now - step.start_time)) if step.status == 1 and step.start_time > 0 else 0)
    out: dict = {
        "type": enum_name(JOB_TYPE, job.type), "step_type": STEP_PRIMARY if step.step_id == 0 else STEP_COMMON,
        "job_id": step.job_id or job.job_id, "step_id": step.step_id, "name": step.name, "uid": step.uid or job.uid,
        "gid": [job.gid], "time_limit": time_limit(step.time_limit or job.time_limit),
        "start_time": timestamp(step.start_time), "end_time": timestamp(step.end_time),
        "submit_time": timestamp(step.submit_time or job.submit_time), "node_num": step.node_num,
        "cmd_line": step.cmd_line, "cwd": job.cwd, "ntasks": step.ntasks,
        "req_total_res_view": resource_view(step.alloc_cpus, 0),
        "req_nodes": [], "exclude_nodes": [], "extra_attr": "", "held": False,
        "status": enum_name(JOB_STATUS, step.status), "exit_code": step.exit_code, "craned_list": step.craned_list,
    }
    if active:
        out["elapsed_time"] = duration(elapsed)
    out["execution_node"] = _expand(step.craned_list)
    out["allocated_res_view"] = resource_view(step.alloc_cpus, 0)
    if job.deadline:
        out["deadline_time"] = timestamp(job.deadline)
    out.update({"reason": step.reason, "usage_cpu_ms": u64(step.usage_cpu_ms),
                "usage_mem_peak": u64(step.usage_mem_peak)})
    return out


def query_jobs_info_reply(reply: Any, jobs: Iterable[Any] | None = None, now: float | None = None) -> dict:
    """``QueryJobsInfoReply{ok, job_info_list}`` (``jobs``: the ones to print, default all), then our ``reason``."""
    now = time.time() if now is None else now
    chosen = reply.jobs if jobs is None else jobs
    return {"ok": reply.ok, "job_info_list": [job_info(j, now) for j in chosen], "reason": reply.reason}


# -- cbatch (§2.1) -----------------------------------------------------------------------------------

def _code_name(code: int) -> str | int:
    from crane_cli import rpc

    try:
        return rpc.pb.ErrCode.Name(int(code)) if code else ERR_GENERIC_FAILURE
    except ValueError:
        return int(code)


def submit_batch_job_reply(reply: Any) -> dict:
    """``SubmitBatchJobReply{ok, job_id | code, reason}`` (a refusal without a code: ERR_GENERIC_FAILURE)."""
    out: dict = {"ok": reply.ok}
    if reply.ok:
        out["job_id"] = reply.job_id
    else:
        out["code"] = _code_name(reply.code)
    out["reason"] = reply.reason
    return out


def submit_batch_jobs_reply(reply: Any, requested: int | None = None) -> dict:
    """``SubmitBatchJobsReply{job_id_list, code_list}``: one code per copy that was not accepted; then ours."""
    ids = list(reply.job_ids)
    refused = 0 if reply.ok else max(1, (requested or 1) - len(ids))
    return {"job_id_list": ids, "code_list": [_code_name(reply.code)] * refused, "ok": reply.ok,
            "reason": reply.reason}


# -- nodes and partitions (§2.4-2.6) --------------------------------------------------------------

def _resource_state(node: Any) -> str:
    return "CRANE_" + (node.resource_state or "down").upper()


def _control_state(node: Any) -> str:
    return "CRANE_" + (node.control_state or "none").upper()


POWER_ACTIVE = "CRANE_POWER_ACTIVE"  # nodes report no power state here: every node counts as active


def dedicated_resource(gres: dict[str, dict[str, int]]) -> dict:
    """``DedicatedResourceInNode``: name -> type -> slots; slot ids are not tracked here, so they are indices."""
    return {"name_type_map": {name: {"type_slots_map": {kind: {"slots": [str(i) for i in range(count)]}
                                                         for kind, count in sorted(kinds.items())}}
                              for name, kinds in sorted(gres.items())}}


def resource_in_node(cpu: float, mem: int, gres: dict[str, dict[str, int]]) -> dict:
    """``ResourceInNodeV3``."""
    return {"cpu_ids": [], "cpu_count": float(cpu), "memory_bytes": u64(mem), "memory_sw_bytes": u64(mem),
            "gres": dedicated_resource(gres)}


def _minus(total: dict[str, dict[str, int]], used: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {n: {k: max(0, c - used.get(n, {}).get(k, 0)) for k, c in kinds.items()} for n, kinds in total.items()}


def craned_info(node: Any) -> dict:
    """``CranedInfo`` of one node (our ``CranedInfo``), then our ``reason`` and ``last_seen``."""
    total, alloc = parse_gres(node.gres_total), parse_gres(node.gres_alloc)
    return {
        "hostname": node.name, "resource_state": _resource_state(node), "control_state": _control_state(node),
        "power_state": POWER_ACTIVE,
        "res_total": resource_in_node(node.cpu_total, node.mem_total, total),
        "res_avail": resource_in_node(max(0.0, node.cpu_total - node.cpu_alloc),
                                      max(0, node.mem_total - node.mem_alloc), _minus(total, alloc)),
        "res_alloc": resource_in_node(node.cpu_alloc, node.mem_alloc, alloc),
        "partition_names": list(node.partitions), "running_job_num": node.running_jobs, "craned_version": "",
        "system_desc": "", "reason": node.reason, "last_seen": u64(node.last_seen),
    }


def query_craned_info_reply(reply: Any) -> dict:
    """``QueryCranedInfoReply{craned_info_list}``."""
    return {"craned_info_list": [craned_info(n) for n in reply.nodes]}


def _gres_sum(nodes: Iterable[Any], attr: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for node in nodes:
        for name, kinds in parse_gres(getattr(node, attr)).items():
            for kind, count in kinds.items():
                out.setdefault(name, {})[kind] = out.get(name, {}).get(kind, 0) + count
    return out


def partition_info(part: Any, nodes: dict[str, Any] | None = None) -> dict:
    """``PartitionInfo``; ``nodes`` (name -> CranedInfo) gives the alive count and gres, then our own fields."""
    from crane_common import hostlist

    members = [nodes[n] for n in part.nodes if n in nodes] if nodes else []
    alive = sum(1 for n in members if (n.resource_state or "down") != "down")
    total, alloc = _gres_sum(members, "gres_total"), _gres_sum(members, "gres_alloc")
    return {
        "hostlist": hostlist.compress(list(part.nodes)) if part.nodes else "",
        "state": "PARTITION_DOWN" if (part.state or "up").lower() == "down" else "PARTITION_UP",
        "name": part.name, "total_nodes": len(part.nodes), "alive_nodes": alive,
        "res_total": resource_view(part.cpu_total, part.mem_total, total),
        "res_avail": resource_view(max(0.0, part.cpu_total - part.cpu_alloc), max(0, part.mem_total - part.mem_alloc),
                                   _minus(total, alloc)),
        "res_alloc": resource_view(part.cpu_alloc, part.mem_alloc, alloc),
        "allowed_accounts": [], "denied_accounts": [], "default_mem_per_cpu": u64(part.default_mem_per_cpu),
        "max_mem_per_cpu": "0", "default_mem_per_node": "0", "max_mem_per_node": "0",
        "priority": part.priority, "is_default": part.is_default, "max_time_limit": u64(part.max_time_limit),
    }


def query_partition_info_reply(reply: Any, nodes: Iterable[Any] | None = None) -> dict:
    """``QueryPartitionInfoReply{partition_info_list}``."""
    by_name = {n.name: n for n in nodes} if nodes is not None else None
    return {"partition_info_list": [partition_info(p, by_name) for p in reply.partitions]}


def query_cluster_info_reply(partitions: Iterable[Any], nodes: Iterable[Any],
                             keep: Callable[[Any], bool] | None = None) -> dict:
    """cinfo's ``QueryClusterInfoReply{ok, partitions[TrimmedPartitionInfo]}``.

    Per partition, its nodes that pass ``keep`` grouped by (resource, control, power state,
    reason): ``TrimmedCranedInfo{resource_state, control_state, power_state, count,
    craned_list_regex, reason}``.
    """
    from crane_common import hostlist

    by_name = {n.name: n for n in nodes}
    out = []
    for part in partitions:
        groups: dict[tuple[str, str, str], list[str]] = {}
        for name in part.nodes:
            node = by_name.get(name)
            if node is None or (keep is not None and not keep(node)):
                continue
            groups.setdefault((_resource_state(node), _control_state(node), node.reason), []).append(name)
        out.append({"name": part.name,
                    "state": "PARTITION_DOWN" if (part.state or "up").lower() == "down" else "PARTITION_UP",
                    "craned_lists": [{"resource_state": res, "control_state": ctl, "power_state": POWER_ACTIVE,
                                      "count": len(names), "craned_list_regex": hostlist.compress(names),
                                      "reason": reason} for (res, ctl, reason), names in groups.items()]})
    return {"ok": True, "partitions": out}


# -- ccontrol changes (§2.8), reservations and licenses (§2.7) --------------------------------------

def modify_job_reply(reply: Any) -> dict:
    """``ModifyJobReply{modified_jobs, not_modified_jobs, not_modified_reasons}``."""
    return {"modified_jobs": list(reply.modified), "not_modified_jobs": list(reply.not_modified),
            "not_modified_reasons": list(reply.reasons)}


def modify_craned_state_reply(reply: Any) -> dict:
    """``ModifyCranedStateReply{modified_nodes, not_modified_nodes, not_modified_reasons}`` (our ModifyNodeReply)."""
    return {"modified_nodes": list(reply.modified), "not_modified_nodes": list(reply.not_modified),
            "not_modified_reasons": list(reply.reasons)}


def requeue_job_reply(reply: Any) -> dict:
    """``RequeueJobReply{requeued_jobs, not_requeued_jobs}`` (map keys as strings, sorted numerically)."""
    return {"requeued_jobs": list(reply.requeued_jobs),
            "not_requeued_jobs": {str(k): reply.not_requeued_jobs[k] for k in sorted(reply.not_requeued_jobs)}}


def ok_reason_reply(reply: Any) -> dict:
    """``CreateReservationReply`` / ``DeleteReservationReply`` (and our UpdateReservationReply): ``{ok, reason}``."""
    return {"ok": reply.ok, "reason": reply.reason}


def reservation_info(res: Any) -> dict:
    """``ReservationInfo``, then our ``flags``, ``node_count``, ``active`` and ``creator``."""
    return {
        "reservation_name": res.reservation_name, "start_time": timestamp(res.start_time),
        "duration": duration(res.duration), "partition": res.partition, "craned_regex": res.craned_regex,
        "res_total": resource_view(res.cpu_total, res.mem_total),
        "res_avail": resource_view(max(0.0, res.cpu_total - res.cpu_alloc), max(0, res.mem_total - res.mem_alloc)),
        "res_alloc": resource_view(res.cpu_alloc, res.mem_alloc),
        "allowed_accounts": list(res.allowed_accounts), "denied_accounts": list(res.denied_accounts),
        "allowed_users": list(res.allowed_users), "denied_users": list(res.denied_users),
        "flags": list(res.flags), "node_count": res.node_count, "active": res.active, "creator": res.creator,
    }


def query_reservation_info_reply(reply: Any) -> dict:
    """``QueryReservationInfoReply{ok, reason, reservation_info_list}``."""
    return {"ok": reply.ok, "reason": reply.reason,
            "reservation_info_list": [reservation_info(r) for r in reply.reservation_info_list]}


def license_info(lic: Any) -> dict:
    """``LicenseInfo`` (``last_consumed``, ``last_deficit``, ``last_update``: not tracked here, zero)."""
    return {"name": lic.name, "total": lic.total, "used": lic.used, "free": lic.free, "reserved": lic.reserved,
            "remote": lic.remote, "last_consumed": 0, "last_deficit": 0, "last_update": "0"}


def query_licenses_info_reply(reply: Any) -> dict:
    """``QueryLicensesInfoReply{ok, license_info_list}``."""
    return {"ok": reply.ok, "license_info_list": [license_info(x) for x in reply.license_info_list]}


# -- ccancel (§2.9, not protojson) ---------------------------------------------------------------

def cancel_job_reply(reply: Any) -> dict:
    """ccancel's object: ``cancelled_steps`` and ``not_cancelled_job_steps`` keyed by job id (``A_T`` for tasks)."""
    done: dict[str, dict] = {}
    bad: dict[str, dict] = {}

    def failed(key: str) -> dict:
        return bad.setdefault(key, {"reason": "", "step_ids": [], "step_reasons": []})

    for job_id in reply.cancelled:
        done.setdefault(str(job_id), {"steps": []})
    for ref in reply.cancelled_tasks:
        done.setdefault(f"{ref.array_job_id}_{ref.task_id}", {"steps": []})
    for ref in reply.cancelled_steps:
        done.setdefault(str(ref.job_id), {"steps": []})["steps"].append(ref.step_id)
    for ids, reasons, key in ((reply.not_cancelled, reply.reasons, str),
                              (reply.not_cancelled_tasks, reply.task_reasons,
                               lambda r: f"{r.array_job_id}_{r.task_id}")):
        reasons = list(reasons)
        for i, item in enumerate(ids):
            failed(key(item))["reason"] = reasons[i] if i < len(reasons) else ""
    step_reasons = list(reply.step_reasons)
    for i, ref in enumerate(reply.not_cancelled_steps):
        entry = failed(str(ref.job_id))
        entry["step_ids"].append(ref.step_id)
        entry["step_reasons"].append(step_reasons[i] if i < len(step_reasons) else "")
    return {"cancelled_steps": dict(sorted(done.items())), "not_cancelled_job_steps": dict(sorted(bad.items()))}


def go_json(value: Any) -> str:
    """Go ``encoding/json`` (compact): maps sorted by key, ``<``, ``>``, ``&``, U+2028/9 escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


# -- cacctmgr (§2.10): our messages are upstream's, less the per-partition limits ----------------------

def _insert_after(record: dict, after: str, key: str, value: Any) -> dict:
    out: dict = {}
    for k, v in record.items():
        out[k] = v
        if k == after:
            out[key] = value
    out.setdefault(key, value)
    return out


def query_account_info_reply(reply: Any) -> dict:
    """``QueryAccountInfoReply``: our message, each account with upstream's ``partition_resource_limit``
    (field 11, a map: ``{}``, per-partition limits are not modelled here)."""
    from crane_cli.protojson import to_dict

    data = to_dict(reply)
    data["account_list"] = [_insert_after(a, "blocked", "partition_resource_limit", {}) for a in data["account_list"]]
    return data


def query_user_info_reply(reply: Any) -> dict:
    """``QueryUserInfoReply``: our message, each user entry with upstream's ``account_to_partition_limit``
    (field 8, a map: ``{}``), before our ``is_default_account``."""
    from crane_cli.protojson import to_dict

    data = to_dict(reply)
    data["user_list"] = [_insert_after(u, "admin_level", "account_to_partition_limit", {}) for u in data["user_list"]]
    return data


# -- by message name ----------------------------------------------------------------------------------

TRANSLATORS: dict[str, Callable[[Any], dict]] = {
    "QueryJobsInfoReply": query_jobs_info_reply,
    "SubmitBatchJobReply": submit_batch_job_reply,
    "SubmitBatchJobsReply": submit_batch_jobs_reply,
    "QueryCranedInfoReply": query_craned_info_reply,
    "QueryPartitionInfoReply": query_partition_info_reply,
    "ModifyJobReply": modify_job_reply,
    "ModifyNodeReply": modify_craned_state_reply,
    "RequeueJobReply": requeue_job_reply,
    "CreateReservationReply": ok_reason_reply,
    "UpdateReservationReply": ok_reason_reply,
    "DeleteReservationReply": ok_reason_reply,
    "QueryReservationInfoReply": query_reservation_info_reply,
    "QueryLicensesInfoReply": query_licenses_info_reply,
    "QueryAccountInfoReply": query_account_info_reply,
    "QueryUserInfoReply": query_user_info_reply,
}


def translate(message: Any) -> dict | None:
    """Upstream's form of one of our replies, or None when upstream has no different form for it."""
    fn = TRANSLATORS.get(message.DESCRIPTOR.name)
    return None if fn is None else fn(message)
