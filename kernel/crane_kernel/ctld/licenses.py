"""Cluster licenses: named counters (``Licenses: {matlab: 10}``) a job takes while it runs (``cbatch -L``).
A mixin of :class:`~crane_kernel.ctld.core.Controller` (called with its lock held).

A request is ``lic:n[,lic:n...]`` (all of them) or ``lic:n|lic:n...`` (any one: the first alternative
free when the job starts is taken, and recorded); ``n`` defaults to 1. It is checked at submission
(an unknown license, or more than the cluster has, refuses the job). A pending job whose licenses
are not free waits out of the scheduler's view with reason ``Licenses`` (the view keeper asks
:meth:`LicensesMixin.license_reason`; when a license is taken or given back, the jobs asking for it
are looked at again). The commit takes them (:meth:`LicensesMixin.take_licenses`: two starts of
one plan cannot share the last one); they are given back when the job's resources are
(``_release``: its end, a requeue). What a job holds is journaled in its ``rt`` (``lic``), so the
counters are rebuilt from the running jobs at recovery.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crane_common.states import JobState

from crane_kernel.ctld.speccheck import split_all_or_any
from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import REASON_LICENSES

MAX_ITEMS = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class LicenseRequest:
    """A parsed ``-L``: ``(name, count)`` items, all of them, or one of them (``any_of``)."""

    items: tuple[tuple[str, int], ...]
    any_of: bool = False

    def text(self) -> str:
        """The request as ``-L`` takes it."""
        return ("|" if self.any_of else ",").join(f"{n}:{c}" for n, c in self.items)

    def names(self) -> set[str]:
        """The licenses it names."""
        return {n for n, _ in self.items}


def parse_licenses(text: str, known: Mapping[str, int]) -> LicenseRequest:
    """Parse and check ``-L`` against the cluster's licenses; raise JobRejected with one line."""
    any_of, parts = split_all_or_any(text, "|", "license request")
    items: list[tuple[str, int]] = []
    for part in parts:
        name, sep, count = part.strip().partition(":")
        name = name.strip()
        if not _NAME_RE.match(name):
            raise JobRejected(f"license {part.strip()[:40]!r}: expected name[:count]")
        if sep and not count.strip().isdigit():
            raise JobRejected(f"license {name}: the count {count.strip()[:20]!r} is not a whole number")
        n = int(count) if sep else 1
        if name not in known:
            raise JobRejected(f"license {name} does not exist (cluster licenses: {', '.join(sorted(known)) or 'none'})")
        if not 1 <= n <= known[name]:
            raise JobRejected(f"license {name}: {n} asked, the cluster has {known[name]}")
        if not any_of and any(name == k for k, _ in items):
            raise JobRejected(f"license {name} is named twice")
        items.append((name, n))
    if len(items) > MAX_ITEMS:
        raise JobRejected(f"a license request may name at most {MAX_ITEMS} licenses")
    return LicenseRequest(tuple(items), any_of)


class LicensesMixin:
    """The controller's licenses: the counters, the view's gate, taking at commit, giving back at release."""

    cfg: Any
    keeper: Any
    jobs: dict
    pending: dict
    running: dict

    def _init_licenses(self) -> None:
        self.lic_total: dict[str, int] = dict(self.cfg.Licenses)
        self.lic_used: dict[str, int] = dict.fromkeys(self.lic_total, 0)
        self.lic_req: dict[int, LicenseRequest] = {}      # job (while the controller holds it) -> what it asked
        self.lic_held: dict[int, dict[str, int]] = {}     # running job -> what it holds
        self.lic_askers: dict[str, set[int]] = {}         # license -> jobs asking for it
        self.keeper.gates.append(self.license_reason)

    # -- submission and recovery ------------------------------------------------------------
    def check_licenses(self, spec: dict[str, Any]) -> LicenseRequest | None:
        """A submission's ``-L``, parsed and checked (None: none asked)."""
        text = spec.get("licenses") or ""
        return parse_licenses(str(text), self.lic_total) if text else None

    def register_licenses(self, job_id: int, req: LicenseRequest | None) -> None:
        """Remember an accepted job's request."""
        if req is None:
            return
        self.lic_req[job_id] = req
        for name in req.names():
            self.lic_askers.setdefault(name, set()).add(job_id)

    def restore_job_licenses(self, job: Any, spec: dict[str, Any], rt: dict[str, Any]) -> None:
        """A recovered job: its request (from the spec) and, running, what it holds (from ``rt``)."""
        text = spec.get("licenses") or ""
        if not text:
            return
        try:
            self.register_licenses(job.job_id, parse_licenses(str(text), self.lic_total))
        except JobRejected:  # the license left the configuration: the job waits with the reason
            self.lic_req[job.job_id] = LicenseRequest((), False)
        held = rt.get("lic") or {}
        if held and job.state != JobState.Pending:
            self.lic_held[job.job_id] = {str(k): int(v) for k, v in held.items()}
            for k, v in self.lic_held[job.job_id].items():
                self.lic_used[k] = self.lic_used.get(k, 0) + v

    def licenses_rt(self, job_id: int) -> dict[str, Any]:
        """The journal's part: what the job holds (empty when nothing)."""
        held = self.lic_held.get(job_id)
        return {"lic": held} if held else {}

    # -- the gate and the commit ----------------------------------------------------------------
    def _choice(self, req: LicenseRequest) -> dict[str, int] | None:
        """What ``req`` would take now, or None when it cannot (all: every item; any: the first free one)."""
        if not req.items:
            return None
        total, used = self.lic_total, self.lic_used
        if req.any_of:
            for name, n in req.items:
                if total.get(name, 0) - used.get(name, 0) >= n:
                    return {name: n}
            return None
        for name, n in req.items:
            if total.get(name, 0) - used.get(name, 0) < n:
                return None
        return dict(req.items)

    def license_reason(self, job: Any, now: float) -> str | None:
        """The view keeper's gate: ``Licenses`` while the job's licenses are not free."""
        req = self.lic_req.get(job.job_id)
        if req is None or self._choice(req) is not None:
            return None
        return REASON_LICENSES

    def take_licenses(self, job: Any) -> str | None:
        """At commit: take the job's licenses (None), or say why it cannot start (``Licenses``)."""
        req = self.lic_req.get(job.job_id)
        if req is None:
            return None
        got = self._choice(req)
        if got is None:
            return REASON_LICENSES
        for name, n in got.items():
            self.lic_used[name] = self.lic_used.get(name, 0) + n
        self.lic_held[job.job_id] = got
        self._licenses_moved(got)
        return None

    def release_licenses(self, job: Any) -> None:
        """Give back what the job holds (its end, a requeue)."""
        held = self.lic_held.pop(job.job_id, None)
        if not held:
            return
        for name, n in held.items():
            self.lic_used[name] = max(0, self.lic_used.get(name, 0) - n)
        self._licenses_moved(held)

    def _licenses_moved(self, names: Any) -> None:
        """Counters of ``names`` changed: the pending jobs asking for them are looked at again."""
        pending = self.pending
        changed = self.keeper.pending_changed
        for name in names:
            for jid in self.lic_askers.get(name, ()):
                if jid in pending:
                    changed.add(jid)

    def license_tick(self) -> None:
        """Forget the requests of jobs the controller no longer holds (each cycle)."""
        gone = [j for j in self.lic_req if j not in self.jobs]  # kept while queries can show the job
        for jid in gone:
            self.forget_licenses(jid)

    def forget_licenses(self, job_id: int) -> None:
        """Drop a job's request (not what it holds)."""
        req = self.lic_req.pop(job_id, None)
        for name in req.names() if req is not None else ():
            askers = self.lic_askers.get(name)
            if askers is not None:
                askers.discard(job_id)

    # -- queries ------------------------------------------------------------------------------
    def job_licenses(self, job_id: int) -> dict[str, int]:
        """For ``JobInfo.licenses``: what a running job holds, else what it asks for (every alternative)."""
        held = self.lic_held.get(job_id)
        if held:
            return held
        req = self.lic_req.get(job_id)
        return dict(req.items) if req is not None else {}

    def licenses_info(self, names: list[str]) -> list[tuple[str, int, int]]:
        """``(name, total, used)`` of the named licenses (all when empty), sorted by name."""
        wanted = set(names)
        return [(n, t, self.lic_used.get(n, 0)) for n, t in sorted(self.lic_total.items())
                if not wanted or n in wanted]
