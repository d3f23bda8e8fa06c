"""cqueue's columns: how each field of a ``JobInfo`` is shown, and the ``--format`` specifiers.

``Time`` is the elapsed time of a Running job (``-`` otherwise); ``TimeLimit`` is
``unlimited`` at or above the maximum; ``NodeList/Reason`` is the pending reason
of a Pending job and the node list otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from crane_common.units import format_memory

from crane_cli.timefmt import format_duration, format_time_limit, format_timestamp

# JobStatus / JobType numbers of crane.proto (kept here to avoid importing protobuf to render).
PENDING, RUNNING = 0, 1
STATE_NAMES = {
    0: "Pending", 1: "Running", 2: "Completed", 3: "Failed", 4: "ExceedTimeLimit", 5: "Cancelled",
    6: "OutOfMemory", 7: "Configuring", 8: "Starting", 9: "Completing", 10: "Suspended", 11: "Deadline",
    15: "Invalid",
}
TYPE_NAMES = {0: "Interactive", 1: "Batch", 2: "Container"}

Getter = Callable[[object, float], str]


class Field:
    """A column: its title (upper-cased for the header) and how to render a job's cell."""

    __slots__ = ("title", "get")

    def __init__(self, title: str, get: Getter) -> None:
        self.title = title
        self.get = get

    @property
    def header(self) -> str:
        """The column header: the title in upper case."""
        return self.title.upper()

    def __repr__(self) -> str:
        return f"Field({self.title!r})"


def num(x: float) -> str:
    """A CPU count or priority: ``2``, ``1.5``, ``0.25``."""
    if x == int(x):
        return str(int(x))
    return f"{x:.2f}".rstrip("0").rstrip(".")


def state_name(status: int) -> str:
    """The CraneSched name of a ``JobStatus`` number."""
    return STATE_NAMES.get(status, f"Unknown({status})")


def elapsed(job, now: float) -> str:  # noqa: ANN001 - JobInfo
    """Elapsed time of a Running job, ``-`` otherwise."""
    if job.status != RUNNING:
        return "-"
    seconds = job.elapsed or (now - job.start_time if job.start_time > 0 else 0)
    return format_duration(seconds)


def nodelist_or_reason(job, now: float) -> str:  # noqa: ANN001, ARG001
    """The pending reason of a Pending job, its node list otherwise."""
    if job.status == PENDING:
        return job.pending_reason or "-"
    return job.craned_list or "-"


def _b(x: bool) -> str:
    return "true" if x else "false"


def _s(attr: str) -> Getter:
    return lambda j, now: str(getattr(j, attr))


JOB_ID = Field("JobId", lambda j, now: str(j.job_id))
NAME = Field("Name", _s("name"))
JOB_NAME = Field("JobName", _s("name"))
USER = Field("User", _s("user"))
USER_NAME = Field("UserName", _s("user"))
UID = Field("Uid", lambda j, now: str(j.uid))
ACCOUNT = Field("Account", _s("account"))
PARTITION = Field("Partition", _s("partition"))
QOS = Field("QoS", _s("qos"))
QOS_FULL = Field("Qos", _s("qos"))
STATUS = Field("Status", lambda j, now: state_name(j.status))
STATE = Field("State", lambda j, now: state_name(j.status))
TYPE = Field("Type", lambda j, now: TYPE_NAMES.get(j.type, str(j.type)))
JOB_TYPE = Field("JobType", lambda j, now: TYPE_NAMES.get(j.type, str(j.type)))
TIME = Field("Time", elapsed)
ELAPSED = Field("ElapsedTime", elapsed)
TIME_LIMIT = Field("TimeLimit", lambda j, now: format_time_limit(j.time_limit))
NODES = Field("Nodes", lambda j, now: str(j.node_num))
NODE_NUM = Field("NodeNum", lambda j, now: str(j.node_num))
NODELIST_REASON = Field("NodeList/Reason", nodelist_or_reason)
NODELIST_REASON_F = Field("NodeList(Reason)", nodelist_or_reason)
REASON = Field("Reason", lambda j, now: j.pending_reason or "-")
START_TIME = Field("StartTime", lambda j, now: format_timestamp(j.start_time))
SUBMIT_TIME = Field("SubmitTime", lambda j, now: format_timestamp(j.submit_time))
DEADLINE = Field("Deadline", lambda j, now: format_timestamp(getattr(j, "deadline", 0)))
REQUEUE_COUNT = Field("RequeueCount", lambda j, now: str(j.requeue_count))
SUSPENDED_TIME = Field("SuspendedTime", lambda j, now: format_duration(j.suspended_seconds))
REQ_CPUS = Field("ReqCPUs", lambda j, now: num(j.req_cpus))
ALLOC_CPUS = Field("AllocCPUs", lambda j, now: num(j.alloc_cpus))
REQ_CPU_PER_TASK = Field("ReqCpuPerTask", lambda j, now: num(j.cpus_per_task))
REQ_MEM = Field("ReqMemPerNode", lambda j, now: format_memory(j.req_mem_per_node))
ALLOC_MEM = Field("AllocMemPerNode", lambda j, now: format_memory(j.alloc_mem_per_node))
EXCLUSIVE = Field("Exclusive", lambda j, now: _b(j.exclusive))
HELD = Field("Held", lambda j, now: _b(j.held))
PRIORITY = Field("Priority", lambda j, now: num(j.priority))
COMMENT = Field("Comment", _s("comment"))
WCKEY = Field("Wckey", lambda j, now: "")
COMMAND = Field("Command", lambda j, now: j.command or j.cmd_line)
REQ_NODES = Field("ReqNodes", _s("req_nodes"))
EXCLUDE_NODES = Field("ExcludeNodes", _s("exclude_nodes"))

DEFAULT_COLUMNS = [JOB_ID, PARTITION, NAME, USER, ACCOUNT, STATUS, TYPE, TIME, TIME_LIMIT, NODES, NODELIST_REASON]
FULL_COLUMNS = [JOB_ID, JOB_NAME, USER_NAME, PARTITION, ACCOUNT, NODE_NUM, REQ_CPUS, REQ_MEM, ALLOC_CPUS, ALLOC_MEM,
                STATUS, TIME, TIME_LIMIT, START_TIME, SUBMIT_TIME, TYPE, QOS_FULL, EXCLUSIVE, HELD, PRIORITY,
                NODELIST_REASON, DEADLINE]

# Single-letter specifiers (case-sensitive).
LETTERS: dict[str, Field] = {
    "a": ACCOUNT, "c": ALLOC_CPUS, "C": REQ_CPUS, "e": ELAPSED, "h": HELD, "j": JOB_ID, "k": COMMENT, "K": WCKEY,
    "l": TIME_LIMIT, "L": NODELIST_REASON_F, "m": ALLOC_MEM, "M": REQ_MEM, "n": NAME, "N": NODE_NUM, "o": COMMAND,
    "p": PRIORITY, "P": PARTITION, "q": QOS, "Q": REQ_CPU_PER_TASK, "r": REQ_NODES, "R": REASON, "s": SUBMIT_TIME,
    "S": START_TIME, "t": STATE, "T": JOB_TYPE, "u": USER, "U": UID, "x": EXCLUDE_NODES, "X": EXCLUSIVE,
}

# Long names (case-insensitive; matched in lower case).
LONG_NAMES: dict[str, Field] = {
    "account": ACCOUNT, "alloccpus": ALLOC_CPUS, "reqcpus": REQ_CPUS, "elapsedtime": ELAPSED, "elapsed": ELAPSED,
    "time": TIME, "held": HELD, "jobid": JOB_ID, "comment": COMMENT, "wckey": WCKEY, "timelimit": TIME_LIMIT,
    "nodelist": NODELIST_REASON_F, "allocmempernode": ALLOC_MEM, "reqmempernode": REQ_MEM, "name": NAME,
    "jobname": JOB_NAME, "nodenum": NODE_NUM, "nodes": NODES, "command": COMMAND, "priority": PRIORITY,
    "partition": PARTITION, "qos": QOS, "reqcpupertask": REQ_CPU_PER_TASK, "reqnodes": REQ_NODES, "reason": REASON,
    "submittime": SUBMIT_TIME, "starttime": START_TIME, "state": STATE, "status": STATUS, "jobtype": JOB_TYPE,
    "type": TYPE, "user": USER, "username": USER_NAME, "uid": UID, "excludenodes": EXCLUDE_NODES,
    "exclusive": EXCLUSIVE, "deadline": DEADLINE, "requeuecount": REQUEUE_COUNT, "suspendedtime": SUSPENDED_TIME,
}


def resolve(spec: str) -> Field | None:
    """The field of a ``--format`` specifier (a letter as written, or a lower-cased long name)."""
    if len(spec) == 1:
        return LETTERS.get(spec)
    return LONG_NAMES.get(spec)


def columns(full: bool, start: bool = False, qos: bool = False, deadline: bool = False) -> list[Field]:
    """The columns without ``--format``: default (plus StartTime/QoS/Deadline on request) or ``--full``."""
    if full:
        return list(FULL_COLUMNS)
    cols = list(DEFAULT_COLUMNS)
    if start:
        cols.append(START_TIME)
    if qos:
        cols.append(QOS)
    if deadline:
        cols.append(DEADLINE)
    return cols
