"""``ccontrol update jobid=<id> key=value``: the job fields beyond priority, hold and time limit.

Part of :class:`~crane_kernel.ctld.core.Controller` (through
:class:`~crane_kernel.ctld.lifecycle.LifecycleMixin`); priority, hold and time limit stay with
:meth:`~crane_kernel.ctld.changes.ChangesMixin.modify`.

Any active job: ``comment``, ``name``, ``mail_user``, ``mail_type``, ``deadline``. A pending job
only: ``partition``, ``qos``, ``account``, ``begin_time``, ``node_num``, ``nodelist`` — the job's
stored submission is changed and checked again as a submission of its owner is: the field bounds
(``normalize_spec``), the account book (``AccountBook.resolve``: the owner must be allowed the
account, partition and QoS), the job filters (``crane_job_submit``: e.g. a partition that could
never hold it) and the QoS limits (``LimitBook.check_submit``). Each change needs ``job.modify``
on the job (the owner, her account's coordinators, operators, admins). The change is journaled
(the stored spec is rewritten with the job's record) before it is acknowledged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crane_common.hostlist import expand
from crane_common.states import FINAL_STATES, JobState

from crane_kernel.ctld.jobs import ArrayJob, job_from_spec, normalize_spec, recheck_spec
from crane_kernel.ctld.speccheck import check_text_fields, mail_slot, normalize_lifecycle, normalize_mail
from crane_kernel.errors import CraneError, JobRejected

if TYPE_CHECKING:
    from crane_kernel.auth_types import Identity

log = logging.getLogger("cranectld")

ANY_STATE_FIELDS = ("comment", "name", "mail_user", "mail_type", "deadline")
PENDING_FIELDS = ("partition", "qos", "account", "begin_time", "node_num", "nodelist")
EXTRA_FIELDS = ("reservation", "licenses")  # a pending job's -r and -L: ctld/reservations.py modify_job_extra
UPDATE_FIELDS = ANY_STATE_FIELDS + PENDING_FIELDS


class JobUpdateMixin:
    """``update_jobs``: one field of several jobs, each authorized, checked and journaled."""

    def update_jobs(self, job_ids: Iterable[int], identity: Identity, field: str,
                    value: Any) -> tuple[list[int], list[tuple[int, str]]]:
        """Set ``field`` to ``value`` on each job; returns the done ids and ``(id, why)`` for the others."""
        ids = list(job_ids)
        if field in EXTRA_FIELDS:
            return self.modify_job_extra(ids, identity, field, value)
        if field not in UPDATE_FIELDS:
            return [], [(jid, f"unknown field {field!r}") for jid in ids]
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        outbox: list = []
        now = self.clock()
        with self.lock:
            for jid in ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, "Job not found or already finished"))
                    continue
                if not self._authorized(identity, "job.modify", job):
                    failed.append((jid, "Permission denied"))
                    continue
                if field in PENDING_FIELDS and (job.state != JobState.Pending or jid in self.recon.held):
                    failed.append((jid, f"Job is not pending: its {field} can only be changed while it waits"))
                    continue
                if field in PENDING_FIELDS and job.interactive:
                    failed.append((jid, f"the {field} of an interactive job cannot be changed (its client waits)"))
                    continue
                try:
                    self._update_one(job, field, value, now, outbox, identity)
                except (JobRejected, CraneError) as exc:
                    failed.append((jid, str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__))
                    continue
                done.append(jid)
        self.publish(outbox)
        if done:
            self.wake.set()
        return done, failed

    def _update_one(self, job: Any, field: str, value: Any, now: float, outbox: list, identity: Identity) -> None:
        """Check and apply one change to one job, and journal it (its spec and record in one transaction)."""
        jid = job.job_id
        spec = self.store.specs([jid]).get(jid)
        if spec is None:
            raise JobRejected("the job's submission is not in the journal")
        if field in PENDING_FIELDS:
            job = self._resubmitted(job, spec, field, value, now)
        else:
            self._set_field(job, spec, field, value, now)
        self._emit_job(outbox, "job.modified", job, now, actor=identity.user,
                       changes={field: _shown(spec.get(field, value))})
        self.store.write(inserts=[(jid, int(job.state), json.dumps(spec, separators=(",", ":")),
                                   self._rt_json(job))])
        log.info("job %d: %s changed by %s", jid, field, identity.user)

    def _set_field(self, job: Any, spec: dict[str, Any], field: str, value: Any, now: float) -> None:
        """A field any active job may change: checked on a copy of its spec, then applied to both."""
        trial = dict(spec)
        if field in ("comment", "name"):
            trial[field] = str(value)
            check_text_fields(trial, self.cfg)
        elif field in ("mail_user", "mail_type"):
            trial[field] = [t for t in str(value).split(",") if t] if field == "mail_type" else str(value)
            normalize_mail(trial, job.user)
        else:  # deadline
            trial["deadline"] = int(value or 0)
            if trial["deadline"] and job.state == JobState.Pending and now + (job.time_limit or 0) > trial["deadline"]:
                raise JobRejected("the job could not end before that deadline (now + its time limit is later)")
            normalize_lifecycle(trial, now)
        spec.clear()
        spec.update(trial)
        if field == "name":
            job.name = spec["name"]
        elif field == "comment":
            job.comment = spec["comment"]
        elif field in ("mail_user", "mail_type"):
            job.mail = mail_slot(spec) if "mail_type" in spec else None
        else:
            self.set_deadline(job.job_id, spec.get("deadline") or 0)

    def _resubmitted(self, job: Any, spec: dict[str, Any], field: str, value: Any, now: float) -> Any:
        """A pending job's request changed: check it as its owner's submission, and put the new record in place."""
        trial = dict(spec)
        if field == "begin_time":
            trial["begin_time"] = int(value or 0)
        elif field == "node_num":
            trial["node_num"], trial["ntasks"] = int(value), 0  # the tasks follow the nodes
        elif field == "nodelist":
            try:
                trial["nodelist"] = expand(str(value)) if value else []
            except ValueError as exc:
                raise JobRejected(f"bad node list: {exc}") from None
        else:
            trial[field] = str(value)
        raw = {k: v for k, v in trial.items() if k not in ("cpus_per_node", "submit_time")}
        owner = self.accounts.enrich(_owner(job))
        fresh = normalize_spec(raw, self.cfg, job.uid, job.user, now)
        if field == "begin_time" and fresh.get("begin_time", 0) and fresh["begin_time"] < now - 60:
            fresh["begin_time"] = 0
        fresh["submit_time"] = spec["submit_time"]  # the change keeps its place in the queue
        for key in ("array_job_id", "array_task_id", "dependency_ids"):  # the controller's own (normalize drops them)
            if key in spec:
                fresh[key] = spec[key]
        fresh["account"], fresh["qos"] = self.accounts.resolve(job.user, job.uid, fresh.get("account") or "",
                                                               fresh["partition"], fresh.get("qos") or "")
        self.pm.hook.crane_job_submit(job=fresh, identity=owner, cluster=self.cluster_info)
        recheck_spec(fresh, self.cfg, job.uid, job.user, spec["gid"])
        if isinstance(job, ArrayJob):  # the array's tasks to come take the change; the record stays out of the queue
            new = self.replace_array_record(job, fresh)
            spec.clear()
            spec.update(fresh)
            return new
        self.limits.ended(job)  # counted again below, under its new QoS (or back under the old one)
        try:
            self.limits.check_submit([fresh])
        except BaseException:
            self.limits.accepted(job)
            raise
        new = job_from_spec(job.job_id, fresh)
        new.apply_rt(job.rt())
        new.priority, new.reason = job.priority, ""
        self.jobs[job.job_id] = new
        self.pending[job.job_id] = new  # the view keeper replaces the old record (ctld/view.py)
        self.keeper.request_changed(job.job_id)
        self.limits.accepted(new)
        spec.clear()
        spec.update(fresh)
        return new


def _owner(job: Any) -> Any:
    from crane_kernel.auth_types import Identity

    return Identity(job.uid, job.user)


def _shown(value: Any) -> Any:
    """An event's ``changes`` value: JSON-able and short."""
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))[:200]
    return value if isinstance(value, int | float | bool) else str(value)[:200]
