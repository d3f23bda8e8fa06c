"""QoS limits (ctld/limits.py) in a real controller with a real journal: submission, schedule time, commit, modify.

The account book (ctld/accounts.py) is written elsewhere; :class:`StandInBook` is its interface as
limits.py uses it (``qos_of``, ``enforce``, ``listeners``) until the two are merged.
"""

from __future__ import annotations

import pwd
from dataclasses import replace

import pytest
from crane_common.states import JobState
from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.ctld.acctmodel import FLAG_DENY_ON_LIMIT, Qos
from crane_kernel.ctld.core import Controller
from crane_kernel.errors import AccountRejected
from crane_kernel.sched_types import REASON_HELD, REASON_QOS_CPU, REASON_QOS_JOBS, REASON_QOS_WALL

ALICE, BOB, ADMIN = (pwd.getpwnam(n) for n in ("daemon", "bin", "sync"))


class StandInBook:
    """The AccountBook's interface as limits.py uses it (qos_of, enforce, listeners): a stand-in until merge."""

    def __init__(self, *qos: Qos, enforce: tuple[str, ...] = ("associations", "qos", "limits")) -> None:
        self.qos = {q.name: q for q in qos}
        self.enforce = frozenset(enforce)
        self.listeners: list = []

    def qos_of(self, name: str) -> Qos | None:
        return self.qos.get(name)

    def change(self, q: Qos) -> None:
        """Replace a QoS record and tell the listeners, as the book does after a committed change."""
        self.qos[q.name] = q
        for listener in self.listeners:
            listener("qos", q.name)


def _setup(ctld, *qos: Qos, overrides=None, **kw):
    h = ctld(overrides)
    h.register_all()
    book = StandInBook(*qos, **kw)
    h.ctl.limits.attach(book)
    return h, book


def _submit(h, who=ALICE, n=1, **spec):
    spec.setdefault("script", "#!/bin/bash\ntrue\n")
    spec.setdefault("cwd", "/tmp")
    spec.setdefault("time_limit", 600)
    return h.ctl.submit([dict(spec) for _ in range(n)], Identity(who.pw_uid, who.pw_name))


def _end(h, jid):
    job = h.ctl.jobs[jid]
    h.now += 1
    h.feed(m.StepStatus(node=job.head_node, job_id=jid, state="running", epoch=job.epoch, time=h.now),
           m.StepStatus(node=job.head_node, job_id=jid, state="finished", epoch=job.epoch, time=h.now))


def _states(h, ids):
    return [h.ctl.jobs[j].state.name for j in ids]


def _in_view(h):
    return {j.job_id for j in h.ctl.keeper.view.pending}


# ---------------------------------------------------------------------------------------- submission

def test_max_submit_per_user_counts_every_job_of_a_call_and_frees_on_any_end(ctld):
    h, _ = _setup(ctld, Qos("small", max_submit_jobs_per_user=4))
    first = _submit(h, n=2, qos="small")
    with pytest.raises(AccountRejected) as exc:
        _submit(h, n=3, qos="small")                    # 2 + 3 > 4: the whole call is refused
    assert exc.value.code == 65
    msg = str(exc.value)
    assert "MaxSubmitJobsPerUser" in msg and "4" in msg and "2 are pending or running, 3 more" in msg
    assert "\n" not in msg
    _submit(h, n=2, who=BOB, qos="small")               # another user's own count
    _submit(h, n=2, qos="small")                         # exactly the limit
    assert h.ctl.limits.stats()["small"]["submitted"] == 6
    h.ctl.cancel([first[0]], Identity(ALICE.pw_uid, ALICE.pw_name))  # a pending job cancelled
    _submit(h, qos="small")
    h.ctl.schedule_cycle()
    running = [j for j in h.ctl.running if h.ctl.jobs[j].user == ALICE.pw_name]
    _end(h, running[0])                                  # a job that ran ends
    _submit(h, qos="small")
    with pytest.raises(AccountRejected):
        _submit(h, qos="small")
    _submit(h, qos="")                                    # jobs without a QoS are not counted
    assert h.ctl.limits.stats()["small"]["submitted"] == 6


def test_max_submit_per_account_and_in_all(ctld):
    h, _ = _setup(ctld, Qos("acct", max_submit_jobs_per_account=3), Qos("all", max_submit_jobs=2))
    _submit(h, n=2, qos="acct", account="phys")
    _submit(h, n=3, who=BOB, qos="acct", account="chem")
    with pytest.raises(AccountRejected) as exc:
        _submit(h, who=BOB, qos="acct", account="phys", n=2)
    assert exc.value.code == 97 and "MaxSubmitJobsPerAccount" in str(exc.value) and "phys" in str(exc.value)
    _submit(h, qos="all")
    with pytest.raises(AccountRejected) as exc:
        _submit(h, who=BOB, n=2, qos="all")
    assert exc.value.code == 100 and "MaxSubmitJobs" in str(exc.value)


def test_a_qos_without_limits_and_jobs_without_a_qos_are_not_counted(ctld):
    h, _ = _setup(ctld, Qos("plain", priority=5))
    ids = _submit(h, n=2, qos="plain") + _submit(h, qos="") + _submit(h, qos="unknown")
    h.ctl.schedule_cycle()
    assert _states(h, ids) == ["Configuring"] * 4
    assert h.ctl.limits.stats() == {}
    assert [h.ctl.jobs[j].qos_priority for j in ids] == [5.0, 5.0, None, None]


def test_limits_are_enforced_only_with_limits_in_enforce(ctld):
    h, _ = _setup(ctld, Qos("small", max_submit_jobs_per_user=1, max_jobs=0), enforce=("associations", "qos"))
    ids = _submit(h, n=3, qos="small")
    h.ctl.schedule_cycle()
    assert _states(h, ids) == ["Configuring"] * 3
    assert h.ctl.limits.stats() == {}


def test_per_job_limits_refused_with_deny_on_limit(ctld):
    h, _ = _setup(ctld, Qos("strict", max_time_limit_per_job=3600, max_wall=7200, max_cpus_per_user=4,
                            flags=FLAG_DENY_ON_LIMIT))
    with pytest.raises(AccountRejected) as exc:
        _submit(h, qos="strict", time_limit=3601)
    assert exc.value.code == 46 and "3601 s" in str(exc.value) and "3600 s" in str(exc.value)
    with pytest.raises(AccountRejected) as exc:
        _submit(h, qos="strict", node_num=2, cpus_per_task=3)
    assert exc.value.code == 104 and "6 CPUs" in str(exc.value) and "MaxCpusPerUser 4" in str(exc.value)
    [ok] = _submit(h, qos="strict", time_limit=3600, node_num=1, cpus_per_task=4)
    h.ctl.schedule_cycle()
    assert _states(h, [ok]) == ["Configuring"]


def test_per_job_limits_without_deny_wait_with_their_reason_until_the_qos_changes(ctld):
    q = Qos("soft", max_wall=3600, max_cpus_per_user=4)
    h, book = _setup(ctld, q)
    [long], [wide] = _submit(h, qos="soft", time_limit=7200), _submit(h, qos="soft", node_num=2, cpus_per_task=4)
    assert h.ctl.jobs[long].reason == REASON_QOS_WALL and h.ctl.jobs[wide].reason == REASON_QOS_CPU  # at once
    [other] = _submit(h, qos="")
    for _ in range(3):
        h.ctl.schedule_cycle()
    assert _states(h, [long, wide, other]) == ["Pending", "Pending", "Configuring"]
    assert h.ctl.jobs[long].reason == REASON_QOS_WALL and h.ctl.jobs[wide].reason == REASON_QOS_CPU
    assert not _in_view(h) & {long, wide}
    book.change(replace(q, max_wall=None))               # the book's listener: only 'long' is free now
    h.ctl.schedule_cycle()
    assert _states(h, [long, wide]) == ["Configuring", "Pending"]
    book.change(replace(q, max_wall=None, max_cpus_per_user=None))
    h.ctl.schedule_cycle()
    assert _states(h, [wide]) == ["Configuring"]


# ---------------------------------------------------------------------------------------- schedule time

@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_max_jobs_per_user_commit_recheck_and_the_blocked_stay_out_of_the_view(ctld, scheduler):
    h, _ = _setup(ctld, Qos("small", max_jobs_per_user=2), overrides={"Plugins": {"Scheduler": scheduler}})
    mine = _submit(h, n=5, qos="small")
    [bobs] = _submit(h, who=BOB, qos="small")
    h.ctl.schedule_cycle()                               # the plan starts all six; the commit keeps two of alice's
    assert _states(h, mine) == ["Configuring"] * 2 + ["Pending"] * 3
    assert _states(h, [bobs]) == ["Configuring"]
    assert all(h.ctl.jobs[j].reason == REASON_QOS_JOBS for j in mine[2:])
    h.ctl.schedule_cycle()
    assert not _in_view(h) & set(mine)                   # out of the view
    assert h.ctl.limits.stats()["small"] == {"submitted": 6, "running": 3, "pending": 3, "blocked": 3}
    _end(h, mine[0])
    h.ctl.schedule_cycle()                               # one slot: exactly one more starts
    assert _states(h, mine[1:]) == ["Configuring", "Configuring", "Pending", "Pending"]
    h.ctl.schedule_cycle()
    assert not _in_view(h) & set(mine)
    assert h.ctl.jobs[mine[4]].reason == REASON_QOS_JOBS


def test_a_blocked_head_job_does_not_block_fifo(ctld):
    """Alice's big job (over MaxJobsPerUser) heads the FIFO queue and would not fit; it is out of the view."""
    h, _ = _setup(ctld, Qos("small", max_jobs_per_user=1))
    [a1] = _submit(h, qos="small")
    h.ctl.schedule_cycle()
    [big] = _submit(h, qos="small", node_num=4, cpus_per_task=4)
    [b1] = _submit(h, who=BOB, qos="")
    h.ctl.schedule_cycle()
    assert _states(h, [a1, big, b1]) == ["Configuring", "Pending", "Configuring"]
    assert h.ctl.jobs[big].reason == REASON_QOS_JOBS


def test_max_cpus_per_user_and_max_jobs_per_account_and_in_all(ctld):
    h, _ = _setup(ctld, Qos("cpu", max_cpus_per_user=5), Qos("acct", max_jobs_per_account=1),
                  Qos("all", max_jobs=1))
    c = _submit(h, qos="cpu", n=3, cpus_per_task=2)
    a = _submit(h, qos="acct", account="phys", n=2) + _submit(h, who=BOB, qos="acct", account="chem")
    t = _submit(h, qos="all") + _submit(h, who=BOB, qos="all")
    h.ctl.schedule_cycle()
    assert _states(h, c) == ["Configuring", "Configuring", "Pending"] and h.ctl.jobs[c[2]].reason == REASON_QOS_CPU
    assert _states(h, a) == ["Configuring", "Pending", "Configuring"] and h.ctl.jobs[a[1]].reason == REASON_QOS_JOBS
    assert _states(h, t) == ["Configuring", "Pending"]
    _end(h, c[0])
    _end(h, a[0])
    _end(h, t[0])
    h.ctl.schedule_cycle()
    assert _states(h, [c[2], a[1], t[1]]) == ["Configuring"] * 3


def test_limit_reasons_rank_below_held_and_qos_changes_reach_blocked_jobs(ctld):
    q = Qos("small", max_jobs=1)
    h, book = _setup(ctld, q)
    admin = Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin")
    first, held, waits = _submit(h, n=3, qos="small")
    h.ctl.modify([held], admin, hold=True)
    h.ctl.schedule_cycle()
    h.ctl.schedule_cycle()
    assert h.ctl.jobs[held].reason == REASON_HELD and h.ctl.jobs[waits].reason == REASON_QOS_JOBS
    book.change(replace(q, max_jobs=2))
    h.ctl.schedule_cycle()
    assert _states(h, [first, held, waits]) == ["Configuring", "Pending", "Configuring"]
    assert h.ctl.jobs[held].reason == REASON_HELD


def test_requeue_keeps_the_job_submitted_and_recovery_rebuilds_the_counters(ctld):
    h, book = _setup(ctld, Qos("small", max_jobs_per_user=1, max_submit_jobs_per_user=3))
    ids = _submit(h, n=3, qos="small")
    h.ctl.schedule_cycle()
    before = h.ctl.limits.stats()
    assert before["small"]["running"] == 1 and before["small"]["submitted"] == 3
    again = Controller(h.cfg, h.store, h.pm, [].extend, clock=lambda: h.now)
    again.recover()
    again.limits.attach(book)
    assert again.limits.stats()["small"] == {**before["small"], "pending": 0, "blocked": 0}
    with pytest.raises(AccountRejected):
        again.submit([{"script": "#!/bin/bash\n", "qos": "small"}], Identity(ALICE.pw_uid, ALICE.pw_name))
    again.schedule_cycle()
    assert [again.jobs[j].state.name for j in ids] == ["Configuring", "Pending", "Pending"]
    assert again.jobs[ids[1]].reason == REASON_QOS_JOBS
    # the running job's node is lost and the job requeued: no longer running, still submitted
    job = again.jobs[ids[0]]
    with again.lock:  # what _end_lost and release_held do for a requeued job once its node confirmed
        again._free(job)
        job.state = JobState.Pending
        job.alloc_nodes, job.head_node = (), ""
        again.pending[job.job_id] = job
    assert again.limits.stats()["small"]["running"] == 0
    assert again.limits.stats()["small"]["submitted"] == 3
    again.handle_messages([(f"{i}-0", m.NodeRegister(node=n.name, cpus=n.sched.cpus_total, mem=n.sched.mem_total))
                           for i, n in enumerate(again.nodes.values())])
    again.schedule_cycle()
    assert sum(again.jobs[j].state.name == "Configuring" for j in ids) == 1


# ---------------------------------------------------------------------------------------- modify

def test_time_limit_changes_never_exceed_the_qos_cap(ctld):
    h, _ = _setup(ctld, Qos("capped", max_time_limit_per_job=3600))
    alice = Identity(ALICE.pw_uid, ALICE.pw_name)
    admin = Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin")
    [jid] = _submit(h, qos="capped", time_limit=7200)
    h.ctl.schedule_cycle()
    assert h.ctl.jobs[jid].reason == REASON_QOS_WALL
    done, failed = h.ctl.modify([jid], alice, time_limit=5000)   # lowered, still above the cap
    assert done == [] and "3600 s" in failed[0][1] and "capped" in failed[0][1]
    done, failed = h.ctl.modify([jid], admin, time_limit=4000)   # admins too
    assert done == [] and "per-job maximum" in failed[0][1]
    assert h.ctl.modify([jid], alice, time_limit=1800) == ([jid], [])
    h.ctl.schedule_cycle()
    assert _states(h, [jid]) == ["Configuring"]
    assert h.ctl.modify([jid], admin, time_limit=3600) == ([jid], [])
    assert h.ctl.modify([jid], admin, time_limit=3601)[0] == []


# ---------------------------------------------------------------------------------------- QoS priority

def test_the_higher_priority_qos_goes_first(ctld):
    h, book = _setup(ctld, Qos("low", priority=10), Qos("high", priority=100),
                     overrides={"Plugins": {"Priority": "multifactor", "Settings": {"multifactor": {
                         "WeightAge": 0, "WeightFairShare": 0, "WeightPartition": 0, "WeightQoS": 1000}}}})
    whole = {"node_num": 4, "cpus_per_task": 4}
    [lo] = _submit(h, qos="low", **whole)
    [hi] = _submit(h, qos="high", **whole)
    assert h.ctl.jobs[hi].qos_priority == 100.0 and h.ctl.jobs[lo].qos_priority == 10.0
    h.ctl.schedule_cycle()
    assert _states(h, [lo, hi]) == ["Pending", "Configuring"]
    assert h.ctl.jobs[lo].priority == pytest.approx(100.0)
    book.change(replace(book.qos["low"], priority=1000))  # a QoS's priority changed: its jobs follow
    h.ctl.schedule_cycle()
    assert h.ctl.jobs[lo].qos_priority == 1000.0 and h.ctl.jobs[lo].priority == pytest.approx(1000.0)


def test_an_end_looks_again_only_at_the_jobs_its_group_blocks(ctld):
    h, _ = _setup(ctld, Qos("small", max_jobs_per_user=1, max_jobs_per_account=1))
    alices = _submit(h, n=3, qos="small", account="phys")
    bobs = _submit(h, who=BOB, n=3, qos="small", account="chem")
    [free] = _submit(h, n=2, qos="")[:1]
    h.ctl.schedule_cycle()
    h.ctl.schedule_cycle()
    assert h.ctl.keeper.pending_changed == set()
    _end(h, alices[0])
    with h.ctl.lock:
        h.ctl.limits.admit(h.now)
    assert h.ctl.keeper.pending_changed - {alices[0]} == set(alices[1:])   # not bob's, not the free jobs
    h.ctl.schedule_cycle()
    assert _states(h, alices + bobs) == ["Completed", "Configuring", "Pending", "Configuring", "Pending", "Pending"]
    assert _states(h, [free]) == ["Configuring"]


def test_a_group_below_its_limit_lets_its_best_jobs_back_in_first_then_the_rest(ctld):
    h, _ = _setup(ctld, Qos("small", max_jobs_per_user=1), overrides={"Plugins": {"Scheduler": "easy"}})
    admin = Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin")
    h.ctl.limits.ADMIT_MIN, h.ctl.limits.ADMIT_PER_SLOT = 2, 1
    [first] = _submit(h, qos="small")
    h.ctl.schedule_cycle()
    waiting = _submit(h, n=6, qos="small")
    h.ctl.modify([waiting[4]], admin, priority=1000)
    h.ctl.schedule_cycle()
    _end(h, first)
    with h.ctl.lock:
        h.ctl.limits.admit(h.now)
    assert h.ctl.keeper.pending_changed & set(waiting) == {waiting[4], waiting[0]}  # the pinned one, the oldest
    h.ctl.schedule_cycle()
    assert _states(h, waiting) == ["Pending"] * 4 + ["Configuring", "Pending"]

    # the admitted jobs do not fit (bob holds a CPU on every node): the next ones come in, cycle by cycle,
    # until the small one, last in the queue, backfills
    [bobs] = _submit(h, who=BOB, qos="", node_num=4, time_limit=600)
    big = _submit(h, n=4, qos="small", node_num=4, cpus_per_task=4, time_limit=600)
    [tiny] = _submit(h, qos="small", time_limit=60)
    for jid in waiting[:4] + waiting[5:]:
        h.ctl.cancel([jid], admin)
    h.ctl.schedule_cycle()
    assert _states(h, [bobs]) == ["Configuring"] and not _in_view(h) & {*big, tiny}
    _end(h, waiting[4])
    seen = []
    for _ in range(4):
        h.ctl.schedule_cycle()
        seen.append(len(_in_view(h) & set(big)))
        if h.ctl.jobs[tiny].state.name != "Pending":
            break
    assert _states(h, [tiny]) == ["Configuring"]
    assert seen[:2] == [2, 4] and len(seen) == 3


def test_the_books_listener_never_waits_for_the_controller(ctld):
    import threading

    q = Qos("small", max_jobs=0)
    h, book = _setup(ctld, q)
    [jid] = _submit(h, qos="small")
    h.ctl.schedule_cycle()
    assert h.ctl.jobs[jid].reason == REASON_QOS_JOBS
    with h.ctl.lock:                                     # the controller busy: the book's change still returns
        t = threading.Thread(target=book.change, args=(replace(q, max_jobs=None),))
        t.start()
        t.join(5)
        assert not t.is_alive()
    h.ctl.schedule_cycle()
    assert _states(h, [jid]) == ["Configuring"]


def test_a_lost_job_counts_while_its_resources_are_held(ctld):
    h, _ = _setup(ctld, Qos("small", max_jobs_per_user=1), overrides={"CraneCtld": {"CranedTimeout": 30}})
    admin = Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin")
    a, b = _submit(h, n=2, qos="small")
    h.ctl.schedule_cycle()
    node = h.ctl.jobs[a].head_node
    h.now += 31
    for n in h.ctl.nodes.values():                       # every node but a's is heard from
        if n.name != node:
            n.last_seen = h.now
    h.ctl.schedule_cycle()                               # a's node is DOWN: a ends, its resources held
    assert _states(h, [a, b]) == ["Failed", "Pending"]
    assert h.ctl.limits.stats()["small"]["running"] == 1 and h.ctl.jobs[b].reason == REASON_QOS_JOBS
    h.ctl.confirm_node_down([node], "powered off", admin)  # released: b may start
    assert h.ctl.limits.stats()["small"]["running"] == 0
    h.ctl.schedule_cycle()
    assert _states(h, [b]) == ["Configuring"]
