"""Array job ids on the command line and in output: ``A`` (the whole array), ``A_T`` (one task),
``A_[1-5,7]`` (several tasks); a task shows as ``A_T``, the tasks still to come as ``A_[5-1000%10]``."""

from __future__ import annotations

from crane_cli.errors import arg_error

MAX_ID = 0xFFFFFFFF


def _tasks(text: str, item: str, prog: str) -> list[int]:
    if text.startswith("[") and text.endswith("]"):
        out: list[int] = []
        for part in text[1:-1].split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()) or (dash and int(last) < int(first)):
                raise arg_error(f"{prog}: invalid array task list {item!r}: expected <id>_[1-5,7]")
            span = range(int(first), int(last if dash else first) + 1)
            if len(out) + len(span) > 100_000:
                raise arg_error(f"{prog}: {item!r} names more than 100000 array tasks")
            out.extend(span)
        return out
    if not text.isdigit():
        raise arg_error(f"{prog}: invalid array task id {item!r}: expected <id>_<task> or <id>_[1-5,7]")
    return [int(text)]


def split_ref(item: str, prog: str) -> tuple[int, list[int] | None]:
    """``"12"`` -> (12, None); ``"12_3"`` -> (12, [3]); ``"12_[1-3]"`` -> (12, [1, 2, 3]) (exit 2 when malformed)."""
    job, underscore, tasks = item.partition("_")
    if not job.isdigit() or not 0 < int(job) <= MAX_ID:
        raise arg_error(f"{prog}: invalid job id {item!r}")
    return int(job), (_tasks(tasks, item, prog) if underscore else None)


def split_items(value: str) -> list[str]:
    """Split ``1,2_[3,5-7],4`` at the commas outside brackets (empty items dropped)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and not depth:
            out.append(value[start:i])
            start = i + 1
    out.append(value[start:])
    return [x.strip() for x in out if x.strip()]


def parse_refs(values: list[str] | tuple[str, ...] | None, prog: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Job ids and ``(array id, task)`` pairs named by ``values`` (comma lists of ``A``, ``A_T``, ``A_[...]``)."""
    ids: list[int] = []
    tasks: list[tuple[int, int]] = []
    for item in (x for value in values or () for x in split_items(value)):
        job, which = split_ref(item, prog)
        if which is None:
            if job not in ids:
                ids.append(job)
        else:
            tasks.extend((job, t) for t in which if (job, t) not in tasks)
    return ids, tasks


def display_id(info: object) -> str:
    """How a job is named in tables: ``17``, a task ``12_3``, an array's tasks to come ``12_[4-9%2]``."""
    array = getattr(info, "array_job_id", 0)
    job_id = info.job_id  # type: ignore[attr-defined]
    if not array:
        return str(job_id)
    if array == job_id:
        pending = getattr(info, "array_pending", "")
        return f"{array}_[{pending}]" if pending else str(array)
    return f"{array}_{info.array_task_id}"  # type: ignore[attr-defined]


def collapse_pending(jobs: list) -> list:
    """Rows with an array's waiting tasks folded into one ``A_[...]`` row (as squeue shows them).

    A task that waits for resources like its array (Pending, not held) joins its array's row
    (made from the task when the array has no row of its own: every task already created).
    """
    from crane_cli import rpc

    waiting: dict[int, list] = {}
    parents: dict[int, object] = {}
    out = []
    for job in jobs:
        array = job.array_job_id
        if array and array == job.job_id:
            parents[array] = job
            out.append(job)
        elif array and job.status == 0 and not job.held:
            waiting.setdefault(array, []).append(job)
        else:
            out.append(job)
    for array, tasks in waiting.items():
        if len(tasks) == 1 and array not in parents:
            out.append(tasks[0])
            continue
        row = parents.get(array)
        if row is None:
            row = rpc.pb.JobInfo()
            row.CopyFrom(tasks[0])
            row.job_id, row.array_job_id, row.array_pending = array, array, ""
            out.append(row)
        from crane_common.hostlist import format_ranges  # only here: cqueue's start-up stays light

        rest, _, limit = row.array_pending.partition("%")
        text = ",".join(x for x in (format_ranges(t.array_task_id for t in tasks), rest) if x)
        row.array_pending = text + (f"%{limit}" if limit else "")
    out.sort(key=lambda j: j.job_id)
    return out
