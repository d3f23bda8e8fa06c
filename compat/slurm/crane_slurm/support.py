"""What our CLI (and so the controller it ships with) supports today, for the fields the wrappers pass through.

Some of the fields the wrappers fill (``CancelJobRequest.signal``, the ``array_tasks`` of queries,
cancellations and changes) are in the API before every controller acts on them: one that does
not would ignore them, and ``scancel -s USR1 5`` would *cancel* job 5. So a wrapper passes such a
field only when our own command accepts the same thing (``ccancel -s``, ``ccancel 5_1``), and
refuses it with the one-line error (exit 2) otherwise. Options cbatch does not take yet are
refused by cbatch itself.
"""

from __future__ import annotations

from functools import cache

from crane_cli.errors import CliError


@cache
def cancel_signal() -> bool:
    """Does ``ccancel`` take ``-s/--signal`` (signal the jobs instead of ending them)?"""
    from crane_cli import ccancel

    return any(getattr(p, "name", None) == "signal" for p in ccancel.build_command().params)


@cache
def array_tasks() -> bool:
    """Do our commands take array task ids (``<array>_<task>``)?"""
    from crane_cli import ccancel

    try:
        ccancel.parse_ids(["1_1"])
    except (CliError, AttributeError, TypeError):  # refused, or ccancel changed shape: refuse (the safe side)
        return False
    return True


def require_array_tasks(prog: str, tasks: list) -> None:
    """Refuse ``<array>_<task>`` ids (exit 2) while our commands do not take them."""
    if tasks and not array_tasks():
        from crane_slurm.slurmopts import usage

        first = tasks[0]
        raise usage(prog, f"array task ids ({first[0]}_{first[1]}) are not supported by this cluster yet")


def task_refs(pb: object, tasks: list[tuple[int, int]]) -> list:
    """``(array id, task id)`` pairs as ``ArrayTaskRef`` messages."""
    return [pb.ArrayTaskRef(array_job_id=a, task_id=t) for a, t in tasks]  # type: ignore[attr-defined]


def job_query(pb: object, fields: dict) -> object:
    """A ``QueryJobsInfoRequest`` from plain fields (``array_tasks`` as pairs)."""
    fields = dict(fields)
    tasks = task_refs(pb, fields.pop("array_tasks", []))
    return pb.QueryJobsInfoRequest(**fields, array_tasks=tasks)  # type: ignore[attr-defined]
