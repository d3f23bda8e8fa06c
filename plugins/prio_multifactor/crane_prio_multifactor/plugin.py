"""The ``multifactor`` priority plugin: one NumPy pass over every pending job.

priority = WeightAge * age + WeightFairShare * fairshare + WeightJobSize * size
         + WeightPartition * partition + WeightQoS * qos

Every factor lies in [0, 1]:

* age = min(now - submit_time, MaxAge) / MaxAge (0 when MaxAge is 0; negative ages count 0);
* fairshare = 2 ** (-U / S) of the job's account (see :mod:`crane_prio_multifactor.fairshare`);
* size = mean of (job CPUs / partition CPUs) and (job nodes / partition nodes), capped at 1;
  with FavorSmall it is ``1 - size``;
* partition = the partition's priority / the highest partition priority in the view (0 if none > 0);
* qos = the job's QoS priority / the highest QoS priority in play (0 if none > 0). A job's QoS
  priority is ``QoSPriority[qos]`` when that setting names its QoS (an override), else the
  account database's priority of the QoS (``job.qos_priority``, set by the controller), else 0;
  the highest in play is the largest of the ``QoSPriority`` values and the account database
  priorities of the jobs in this call.

Normalising by fixed caps and maxima (rather than min-max over the pending set)
keeps a job's priority stable from one cycle to the next. A job with
``pinned_priority`` set gets exactly that value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from crane_kernel import hookimpl

from crane_prio_multifactor.fairshare import UsageLedger
from crane_prio_multifactor.settings import Settings, parse_settings

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

__all__ = ["MultifactorPriority"]

_submit = attrgetter("submit_time")
_nodes = attrgetter("node_num")
_cpus = attrgetter("cpus_per_node")
_part = attrgetter("partition")
_account = attrgetter("account")
_qos = attrgetter("qos")
_pinned = attrgetter("pinned_priority")
_qos_prio = attrgetter("qos_priority")


class MultifactorPriority:
    """Multifactor priority with decayed historical fair share.

    Instantiated by stevedore with no arguments from entry point
    ``crane.priority: multifactor``; :meth:`crane_plugin_configure` takes the settings of
    :mod:`crane_prio_multifactor.settings`. The controller (or ``crane sim``)
    calls the ``crane_job_finished`` hook when a job ends (accounting may call
    :meth:`record_usage` directly), and saves/restores the usage with
    :meth:`state` / :meth:`load_state`; the plugin persists nothing itself.
    """

    def __init__(self) -> None:
        self.settings: Settings = parse_settings({})
        self.ledger = UsageLedger(self.settings.half_life)
        self._part_cache: tuple[Any, dict[str, tuple[float, float, float]]] | None = None

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Validate and apply settings (recorded usage is kept; the half-life applies from now on)."""
        self.settings = parse_settings(settings)
        self.ledger.half_life = self.settings.half_life

    # ------------------------------------------------------------------ usage

    def record_usage(self, account: str, cpu_seconds: float, at_time: float) -> None:
        """Charge ``cpu_seconds`` of CPU time to ``account`` at ``at_time`` (called when a job ends)."""
        self.ledger.record(account, float(cpu_seconds), float(at_time))

    @hookimpl
    def crane_job_finished(self, job: "SchedJob", start_time: float, end_time: float) -> None:
        """Hook entry point: charge the ended job's allocated CPU-seconds to its account.

        CPU-seconds = ``node_num * cpus_per_node * (end_time - start_time)``. Never raises:
        a malformed record is ignored.
        """
        try:
            duration = float(end_time) - float(start_time)
            if duration > 0:
                cpus = max(1, int(job.node_num)) * float(job.cpus_per_node)
                self.ledger.record(job.account, cpus * duration, float(end_time))
        except (AttributeError, TypeError, ValueError):
            return

    def state(self) -> dict:
        """The plugin's persistent state (the usage ledger), JSON-serialisable."""
        return {"version": 1, "usage": self.ledger.state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        if state.get("version") != 1:
            raise ValueError(f"multifactor priority: unknown state version {state.get('version')!r}")
        self.ledger.load(state.get("usage", {}))

    # ------------------------------------------------------------------ priorities

    @hookimpl
    def crane_job_priorities(self, jobs: "Sequence[SchedJob]", view: "ClusterView", now: float) -> list[float]:
        """Hook entry point: the priority of every job in ``jobs``, in order."""
        return self.priorities(jobs, view, now).tolist()

    def priorities(self, jobs: "Sequence[SchedJob]", view: "ClusterView", now: float) -> np.ndarray:
        """Priorities as a NumPy array (pinned priorities applied)."""
        f = self.factors(jobs, view, now)
        st = self.settings
        prio = (st.weight_age * f["age"] + st.weight_fairshare * f["fairshare"] + st.weight_size * f["size"]
                + st.weight_partition * f["partition"] + st.weight_qos * f["qos"])
        pins = list(map(_pinned, jobs))
        for i, p in enumerate(pins):
            if p is not None:
                prio[i] = p
        return prio

    def factors(self, jobs: "Sequence[SchedJob]", view: "ClusterView", now: float) -> dict[str, np.ndarray]:
        """Each normalised factor per job (``age``, ``fairshare``, ``size``, ``partition``, ``qos``)."""
        st = self.settings
        n = len(jobs)
        out: dict[str, np.ndarray] = {}
        zeros = np.zeros(n)
        if st.weight_age and st.max_age > 0:
            submit = np.fromiter(map(_submit, jobs), dtype=np.float64, count=n)
            out["age"] = np.clip(now - submit, 0.0, st.max_age) / st.max_age
        else:
            out["age"] = zeros
        parts = list(map(_part, jobs)) if (st.weight_size or st.weight_partition) else None
        pinfo = self._partitions(view) if parts is not None else {}
        if st.weight_size and parts is not None:
            nn = np.fromiter(map(_nodes, jobs), dtype=np.float64, count=n)
            cpn = np.fromiter(map(_cpus, jobs), dtype=np.float64, count=n)
            get = pinfo.get
            none = (0.0, 0.0, 0.0)
            tot = np.array([get(p, none)[:2] for p in parts], dtype=np.float64).reshape(n, 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                cpu_term = np.where(tot[:, 0] > 0, nn * cpn / tot[:, 0], 1.0)
                node_term = np.where(tot[:, 1] > 0, nn / tot[:, 1], 1.0)
            size = np.minimum((cpu_term + node_term) * 0.5, 1.0)
            out["size"] = 1.0 - size if st.favor_small else size
        else:
            out["size"] = zeros
        if st.weight_partition and parts is not None:
            get = pinfo.get
            out["partition"] = np.fromiter((get(p, (0.0, 0.0, 0.0))[2] for p in parts), dtype=np.float64, count=n)
        else:
            out["partition"] = zeros
        out["qos"] = self._qos_factor(jobs, n) if st.weight_qos else zeros
        if st.weight_fairshare and n:
            accounts = list(map(_account, jobs))
            fs = self.ledger.factors(set(accounts), now, st.shares)
            get = fs.__getitem__
            out["fairshare"] = np.fromiter(map(get, accounts), dtype=np.float64, count=n)
        else:
            out["fairshare"] = zeros
        return out

    def _qos_factor(self, jobs: "Sequence[SchedJob]", n: int) -> np.ndarray:
        """Each job's QoS priority (the ``QoSPriority`` setting first, else the account DB's) / the highest."""
        qp = self.settings.qos_priority
        try:
            db = list(map(_qos_prio, jobs))
        except AttributeError:  # a job class without the slot: the setting alone
            db = [None] * n
        vals = np.fromiter(((qp[q] if q in qp else (d or 0.0)) for q, d in zip(map(_qos, jobs), db, strict=True)),
                           dtype=np.float64, count=n)
        qmax = max(max(qp.values(), default=0.0), float(vals.max()) if n else 0.0)
        if qmax <= 0:
            return np.zeros(n)
        return vals / qmax

    def _partitions(self, view: "ClusterView") -> dict[str, tuple[float, float, float]]:
        """``{partition: (total CPUs, node count, normalised priority)}``, cached per partitions mapping."""
        cache = self._part_cache
        if cache is not None and cache[0] is view.partitions:
            return cache[1]
        nodes = view.nodes
        parts = view.partitions
        pmax = max((p.priority for p in parts.values()), default=0)
        info = {}
        for name, p in parts.items():
            idx = [i for i in p.node_indices if 0 <= i < len(nodes)]
            info[name] = (float(sum(nodes[i].cpus_total for i in idx)), float(len(idx)),
                          p.priority / pmax if pmax > 0 else 0.0)
        self._part_cache = (parts, info)
        return info
