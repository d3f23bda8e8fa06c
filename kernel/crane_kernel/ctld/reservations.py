"""Advance reservations: nodes set aside over a time window for some users or accounts (``ccontrol create
reservation``, ``cbatch -r``). A mixin of :class:`~crane_kernel.ctld.core.Controller` (called with its
lock held unless said otherwise).

What the controller does (mechanism); where the jobs go is the scheduler plugins' policy, on the
view's ``reservations`` (:class:`~crane_kernel.sched_types.SchedReservation`):

* the reservations are journaled as one ``meta`` row (``reservations``: name -> record) in the same
  transaction as the change, and restored by :meth:`ReservationsMixin.restore_reservations`;
* a job naming a reservation (``-r``) is accepted only when the reservation exists and admits its
  user and account; until the reservation is active it waits out of the view with reason
  ``Reservation``; once the reservation is gone (it ended, or was deleted) its pending jobs wait
  with ``Reservation deleted`` (they can be given another with ``ccontrol update jobid=..
  reservation=``, or cancelled); jobs running in it keep running;
* at every cycle :meth:`ReservationsMixin.reservation_tick` drops ended reservations, looks again
  at the jobs of those that started or ended, and rebuilds the view's list;
* every planned start is re-checked at commit (:meth:`ReservationsMixin.reservation_refusal`,
  :func:`~crane_kernel.sched_types.reservation_conflict`): no plugin can start a job on a reserved
  node, nor a reservation's job outside it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

from crane_common import hostlist

from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import (
    REASON_RESERVATION_CHANGED,
    REASON_RESERVATION_DELETED,
    REASON_RESERVATION_WAIT,
    SchedReservation,
    job_end,
    reservation_conflict,
)

log = logging.getLogger("cranectld")

FLAGS = ("MAINT", "IGNORE_JOBS")
"""Reservation flags: ``MAINT`` (maintenance: jobs kept off say so), ``IGNORE_JOBS`` (may cover nodes whose
running jobs would still run when it starts; they keep running)."""
MAX_RESERVATIONS = 1000
MAX_DURATION = 10 * 365 * 86400
MAX_LIST = 1000  # users or accounts in one list
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
META_KEY = "reservations"
UPDATABLE = ("start_time", "duration", "partition", "craned_regex", "allowed_accounts", "denied_accounts",
             "allowed_users", "denied_users", "flags")


class ReservationError(Exception):
    """A refused reservation change (one line, shown as ``Failed to ... reservation: <reason>.``)."""


@dataclass
class Reservation:
    """A reservation as the controller keeps and journals it (node names, not indices)."""

    name: str
    start: float
    duration: int
    nodes: tuple[str, ...]
    partition: str = ""
    allowed_accounts: tuple[str, ...] = ()
    denied_accounts: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    denied_users: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    creator: str = ""

    @property
    def end(self) -> float:
        """When it ends (exclusive)."""
        return self.start + self.duration

    def active(self, now: float) -> bool:
        """Whether ``now`` is inside its window."""
        return self.start <= now < self.end

    def admits(self, user: str, account: str) -> bool:
        """Whether a job of ``user`` under ``account`` may run in it (every list that is set must agree)."""
        if self.allowed_users and user not in self.allowed_users:
            return False
        if self.allowed_accounts and account not in self.allowed_accounts:
            return False
        return user not in self.denied_users and account not in self.denied_accounts

    def record(self) -> dict[str, Any]:
        """The journal's form."""
        return asdict(self)

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Reservation:
        """Read the journal's form back."""
        tuples = ("nodes", "allowed_accounts", "denied_accounts", "allowed_users", "denied_users", "flags")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in d.items() if k in cls.__dataclass_fields__})


def _names(values: Any, what: str) -> tuple[str, ...]:
    """A list of user or account names: bounded, each a plain name."""
    out = []
    for v in values or ():
        v = str(v).strip()
        if not v:
            continue
        if len(v) > 256 or not re.fullmatch(r"[A-Za-z0-9_.@-]+", v):
            raise ReservationError(f"invalid {what} name {v[:40]!r}")
        out.append(v)
    if len(out) > MAX_LIST:
        raise ReservationError(f"at most {MAX_LIST} {what}s per list")
    return tuple(dict.fromkeys(out))


def _flags(values: Any) -> tuple[str, ...]:
    out = []
    for v in values or ():
        for f in str(v).split(","):
            f = f.strip().upper()
            if not f:
                continue
            if f not in FLAGS:
                raise ReservationError(f"unknown flag {f[:32]!r} (known: {', '.join(FLAGS)})")
            out.append(f)
    return tuple(dict.fromkeys(out))


class ReservationsMixin:
    """The controller's reservations: create, update, delete, query, the view's gate and the commit's check."""

    cfg: Any
    store: Any
    lock: Any
    keeper: Any
    nodes: dict
    jobs: dict
    pending: dict
    running: dict
    partitions: dict
    sched_nodes: list
    clock: Any
    wake: Any

    def _init_reservations(self) -> None:
        self.reservations: dict[str, Reservation] = {}
        self.resv_jobs: dict[int, str] = {}   # job id (while the controller holds it) -> its reservation
        self._resv_dirty = True               # the view's list must be rebuilt (scheduling thread)
        self._resv_active: set[str] = set()   # the reservations active at the last tick
        self.keeper.view.job_reservations = self.resv_jobs
        self.keeper.gates.append(self.reservation_reason)

    # -- journal --------------------------------------------------------------------------
    def restore_reservations(self) -> None:
        """Read the journaled reservations back (at start-up, before the jobs)."""
        for name, rec in (self.store.get_meta(META_KEY, {}) or {}).items():
            try:
                self.reservations[name] = Reservation.from_record(rec)
            except (TypeError, ValueError) as exc:  # a later version's record: say so, keep going
                log.error("reservation %r in the journal cannot be read (%s): ignored", name, exc)
        self._resv_dirty = True

    def _journal_reservations(self, table: dict[str, Reservation]) -> None:
        """Journal ``table`` as the reservations, then make it the controller's (a failed write changes nothing)."""
        self.store.write(meta={META_KEY: {n: r.record() for n, r in table.items()}})
        self.reservations = table
        self._resv_dirty = True
        self.wake.set()

    def restore_job_reservation(self, job_id: int, spec: dict[str, Any]) -> None:
        """Remember the reservation a recovered job asked for."""
        name = spec.get("reservation") or ""
        if name:
            self.resv_jobs[job_id] = name

    # -- checks -------------------------------------------------------------------------
    def check_reservation(self, spec: dict[str, Any]) -> None:
        """A submission's ``-r``: the reservation must exist and admit the job's user and account."""
        name = spec.get("reservation") or ""
        if not name:
            return
        resv = self.reservations.get(name)
        if resv is None or resv.end <= self.clock():
            raise JobRejected(f"reservation {name[:64]!r} does not exist")
        if not resv.admits(spec.get("user", ""), spec.get("account", "")):
            raise JobRejected(f"user {spec.get('user')} (account {spec.get('account') or '-'}) may not use "
                              f"reservation {name}")
        if resv.partition and resv.partition != spec.get("partition"):
            raise JobRejected(f"reservation {name} is for partition {resv.partition}, the job asks for "
                              f"{spec.get('partition')}")

    def register_reservation(self, job_id: int, spec: dict[str, Any]) -> None:
        """Remember an accepted job's reservation."""
        self.restore_job_reservation(job_id, spec)

    def reservation_reason(self, job: Any, now: float) -> str | None:
        """The view keeper's gate: why a job with ``-r`` may not be scheduled now, or ``None``."""
        name = self.resv_jobs.get(job.job_id)
        if not name:
            return None
        resv = self.reservations.get(name)
        if resv is None or resv.end <= now:
            return REASON_RESERVATION_DELETED
        if not resv.admits(job.user, job.account):
            return REASON_RESERVATION_CHANGED
        if not resv.active(now):
            return REASON_RESERVATION_WAIT
        return None

    def reservation_refusal(self, job: Any, idxs: list[int], now: float) -> str | None:
        """The commit's re-check of one planned start against the live reservations (None: it may start)."""
        if not self.reservations and job.job_id not in self.resv_jobs:
            return None
        if self._resv_dirty:
            self._rebuild_resv_view()
        why = self.reservation_reason(job, now)
        return why or reservation_conflict(self.keeper.view, job, idxs, now)

    # -- the cycle's part ------------------------------------------------------------------
    def reservation_tick(self, now: float) -> None:
        """Drop ended reservations, look again at the jobs of those that started or ended, update the view."""
        ended = [n for n, r in self.reservations.items() if r.end <= now]
        if ended:
            self._journal_reservations({n: r for n, r in self.reservations.items() if n not in ended})
            log.info("reservation(s) %s ended", ", ".join(ended))
        active = {n for n, r in self.reservations.items() if r.active(now)}
        moved = (active ^ self._resv_active) | set(ended)
        self._resv_active = active
        if moved or self._resv_dirty:
            self.keeper.pending_changed.update(j for j, n in self.resv_jobs.items() if j in self.pending)
        if self._resv_dirty or moved:
            self._rebuild_resv_view()
        gone = [j for j in self.resv_jobs if j not in self.jobs]  # kept while queries can show the job
        for j in gone:
            del self.resv_jobs[j]

    def _rebuild_resv_view(self) -> None:
        """The view's ``reservations`` from the table (the scheduling thread, between plugin calls)."""
        view = self.keeper.view
        index = view.node_index
        view.reservations = [
            SchedReservation(r.name, r.start, r.end, tuple(index[n] for n in r.nodes if n in index),
                             maint="MAINT" in r.flags)
            for r in sorted(self.reservations.values(), key=lambda r: (r.start, r.name))]
        view.changed()
        self._resv_dirty = False

    # -- changes (RPCs) ----------------------------------------------------------------------
    def create_reservation(self, info: dict[str, Any], node_count: int, creator: str) -> Reservation:
        """Validate and journal a new reservation (authorized by the caller); raise ReservationError."""
        now = self.clock()
        name = str(info.get("reservation_name") or "")
        if not _NAME_RE.match(name):
            raise ReservationError("a reservation name is 1 to 64 letters, digits, '_', '.' or '-'")
        with self.lock:
            if name in self.reservations:
                raise ReservationError(f"reservation {name} already exists")
            if len(self.reservations) >= MAX_RESERVATIONS:
                raise ReservationError(f"at most {MAX_RESERVATIONS} reservations")
            start = float(info.get("start_time") or 0) or now
            resv = Reservation(name=name, start=start, duration=int(info.get("duration") or 0), nodes=(),
                               partition=str(info.get("partition") or ""),
                               allowed_accounts=_names(info.get("allowed_accounts"), "account"),
                               denied_accounts=_names(info.get("denied_accounts"), "account"),
                               allowed_users=_names(info.get("allowed_users"), "user"),
                               denied_users=_names(info.get("denied_users"), "user"),
                               flags=_flags(info.get("flags")), creator=creator)
            regex = str(info.get("craned_regex") or "")
            if regex and node_count:
                raise ReservationError("give nodes= or nodeCnt=, not both")
            if regex:
                resv.nodes = self._resv_nodes(regex)
            elif node_count:
                self._check_window(resv, now)
                resv.nodes = self._pick_nodes(resv, int(node_count))
            else:
                raise ReservationError("no nodes given (nodes=<hostlist> or nodeCnt=<n>)")
            self._validate(resv, now, fresh=True)
            self._journal_reservations({**self.reservations, name: resv})
        log.info("reservation %s created by %s: %s from %s for %d s", name, creator,
                 hostlist.compress(list(resv.nodes)), start, resv.duration)
        return resv

    def update_reservation(self, name: str, changes: dict[str, Any], fields: list[str]) -> Reservation:
        """Change the named fields of a reservation (authorized by the caller); raise ReservationError."""
        unknown = [f for f in fields if f not in UPDATABLE]
        if unknown:
            raise ReservationError(f"cannot change {unknown[0][:40]!r} (fields: {', '.join(UPDATABLE)})")
        if not fields:
            raise ReservationError("nothing to change")
        now = self.clock()
        with self.lock:
            old = self.reservations.get(name)
            if old is None:
                raise ReservationError(f"reservation {name[:64]} does not exist")
            new = Reservation.from_record(old.record())
            for f in fields:
                value = changes.get(f)
                if f == "start_time":
                    new.start = float(value or 0) or now
                elif f == "duration":
                    new.duration = int(value or 0)
                elif f == "partition":
                    new.partition = str(value or "")
                elif f == "craned_regex":
                    new.nodes = self._resv_nodes(str(value or ""))
                elif f == "flags":
                    new.flags = _flags(value)
                else:
                    setattr(new, f, _names(value, "account" if "account" in f else "user"))
            self._validate(new, now, fresh=False)
            self._journal_reservations({**self.reservations, name: new})
            self.keeper.pending_changed.update(j for j, n in self.resv_jobs.items() if n == name)
        log.info("reservation %s updated: %s", name, ", ".join(fields))
        return new

    def delete_reservation(self, name: str) -> None:
        """Delete a reservation (authorized by the caller); its running jobs keep running."""
        with self.lock:
            if name not in self.reservations:
                raise ReservationError(f"reservation {name[:64]} does not exist")
            self._journal_reservations({n: r for n, r in self.reservations.items() if n != name})
            self.keeper.pending_changed.update(j for j, n in self.resv_jobs.items() if n == name)
        log.info("reservation %s deleted", name)

    # -- validation ---------------------------------------------------------------------------
    def _resv_nodes(self, regex: str) -> tuple[str, ...]:
        try:
            names = hostlist.expand(regex, limit=self.cfg.CraneCtld.MaxHostlistExpand)
        except ValueError as exc:
            raise ReservationError(f"invalid node list {regex[:64]!r}: {exc}") from None
        unknown = [n for n in names if n not in self.nodes]
        if unknown:
            raise ReservationError(f"unknown node {unknown[0][:64]}")
        if not names:
            raise ReservationError("no nodes given")
        return tuple(sorted(set(names), key=lambda n: self.keeper.view.node_index[n]))

    def _check_window(self, resv: Reservation, now: float) -> None:
        if not 1 <= resv.duration <= MAX_DURATION:
            raise ReservationError("duration must be from 1 second to 10 years")
        if resv.start < now - 60:
            raise ReservationError("the start time is in the past")
        if resv.start > now + MAX_DURATION:
            raise ReservationError("the start time is more than ten years ahead")

    def _validate(self, resv: Reservation, now: float, fresh: bool) -> None:
        """The whole reservation's rules: window, partition, access lists, no overlap, no busy node."""
        if fresh or resv.start > now:
            self._check_window(resv, now)
        elif not 1 <= resv.duration <= MAX_DURATION:
            raise ReservationError("duration must be from 1 second to 10 years")
        if resv.end <= now:
            raise ReservationError("the reservation would end before now")
        if resv.partition:
            part = self.partitions.get(resv.partition)
            if part is None:
                raise ReservationError(f"partition {resv.partition[:64]} does not exist")
            members = {self.sched_nodes[i].name for i in part.node_indices}
            outside = [n for n in resv.nodes if n not in members]
            if outside:
                raise ReservationError(f"node {outside[0]} is not in partition {resv.partition}")
        if not (resv.allowed_accounts or resv.allowed_users or resv.denied_accounts or resv.denied_users):
            raise ReservationError("a reservation needs users or accounts (user= or account=)")
        mine = set(resv.nodes)
        for other in self.reservations.values():
            if other.name != resv.name and other.start < resv.end and other.end > resv.start:
                shared = mine.intersection(other.nodes)
                if shared:
                    raise ReservationError(f"node {min(shared)} is reserved by {other.name} over that time")
        if "IGNORE_JOBS" not in resv.flags:
            for job in self.running.values():
                if self.resv_jobs.get(job.job_id) == resv.name or not mine.intersection(job.alloc_nodes):
                    continue
                if job_end(job, job.start_time) > resv.start:
                    raise ReservationError(f"nodes are busy: job {job.job_id} runs on "
                                           f"{hostlist.compress(sorted(mine.intersection(job.alloc_nodes)))} "
                                           "past the start (flags=IGNORE_JOBS to reserve them anyway)")

    def _pick_nodes(self, resv: Reservation, count: int) -> tuple[str, ...]:
        """``nodeCnt=``: the first ``count`` usable nodes (of its partition) free over the whole window."""
        if not 1 <= count <= len(self.nodes):
            raise ReservationError(f"nodeCnt must be from 1 to {len(self.nodes)}")
        if resv.partition:
            part = self.partitions.get(resv.partition)
            if part is None:
                raise ReservationError(f"partition {resv.partition[:64]} does not exist")
            pool = [self.sched_nodes[i] for i in sorted(part.node_indices)]
        else:
            pool = list(self.sched_nodes)
        taken: set[str] = set()
        for other in self.reservations.values():
            if other.start < resv.end and other.end > resv.start:
                taken.update(other.nodes)
        if "IGNORE_JOBS" not in resv.flags:
            for job in self.running.values():
                if job_end(job, job.start_time) > resv.start:
                    taken.update(job.alloc_nodes)
        chosen = [s.name for s in pool if s.usable and s.name not in taken][:count]
        if len(chosen) < count:
            raise ReservationError(f"only {len(chosen)} node(s) are free over that time, {count} asked")
        return tuple(chosen)

    # -- queries --------------------------------------------------------------------------------
    def reservation_usage(self, resv: Reservation) -> tuple[float, float, int, int]:
        """``(cpu_total, cpu_alloc, mem_total, mem_alloc)`` over its nodes; alloc: its running jobs'."""
        cpu_total = mem_total = 0
        for name in resv.nodes:
            s = self.nodes[name].sched if name in self.nodes else None
            if s is not None:
                cpu_total += s.cpus_total
                mem_total += s.mem_total
        cpu_alloc = mem_alloc = 0
        mine = set(resv.nodes)
        for jid, name in self.resv_jobs.items():
            job = self.running.get(jid)
            if name == resv.name and job is not None:
                n = len(mine.intersection(job.alloc_nodes))
                cpu_alloc += job.cpus_per_node * n
                mem_alloc += job.mem_per_node * n
        return cpu_total, cpu_alloc, mem_total, mem_alloc

    # -- ccontrol update jobid=<id> reservation=... | licenses=... (pending jobs) ------------------------
    def modify_job_extra(self, job_ids: list[int], identity: Any, what: str,
                         value: str) -> tuple[list[int], list[tuple[int, str]]]:
        """Give pending jobs another reservation or license request (``""``: none); per job: authorized.

        The stored spec is rewritten (one transaction for all), so the change survives a restart.
        """
        import json

        from crane_common.states import FINAL_STATES, JobState

        done: list[int] = []
        failed: list[tuple[int, str]] = []
        with self.lock:
            rows: list = []
            applied: list = []
            for jid in job_ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, "Job not found or already finished"))
                    continue
                if not self._authorized(identity, "job.modify", job):  # type: ignore[attr-defined]
                    failed.append((jid, "Permission denied: not your job"))
                    continue
                if job.state != JobState.Pending:
                    failed.append((jid, f"only a pending job's {what} can be changed"))
                    continue
                spec = self.store.specs([jid]).get(jid)
                if spec is None:
                    failed.append((jid, "the job's record is missing"))
                    continue
                spec[what] = value
                lic = None
                try:
                    if what == "reservation":
                        self.check_reservation(spec)
                    else:
                        lic = self.check_licenses(spec)  # type: ignore[attr-defined]
                except JobRejected as exc:
                    failed.append((jid, str(exc)))
                    continue
                rows.append((jid, int(job.state), json.dumps(spec, separators=(",", ":")),
                             self._rt_json(job)))  # type: ignore[attr-defined]
                done.append(jid)
                applied.append((jid, None if what == "reservation" else lic))
            self.store.write(inserts=rows)  # journaled first: a failed write changes nothing
            for jid, lic in applied:
                if what == "licenses":
                    self.forget_licenses(jid)  # type: ignore[attr-defined]
                    self.register_licenses(jid, lic)  # type: ignore[attr-defined]
                elif value:
                    self.resv_jobs[jid] = value
                else:
                    self.resv_jobs.pop(jid, None)
                self.keeper.request_changed(jid)
        if done:
            self.wake.set()
        return done, failed
