"""The controller's events: every documented kind, typed, with the job's full record, journaled with the change."""

from __future__ import annotations

from typing import Any

from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.ctld.emit import job_record
from crane_kernel.events import JOB_KINDS, NODE_KINDS, STEP_KINDS, JobEvent, NodeEvent, StepEvent


def _events(h: Any) -> list[Any]:
    """The events in the journal's outbox, decoded, in seq order (what the daemon would publish)."""
    return [m.decode(data) for _seq, data in h.store.outbox_rows()]


def _run(h: Any, jid: int, exit_code: int = 0, **status: Any) -> None:
    job = h.ctl.jobs[jid]
    h.feed(m.StepStatus(node=job.head_node, job_id=jid, state="running", epoch=job.epoch, time=h.now))
    h.now += 5
    h.feed(m.StepStatus(node=job.head_node, job_id=jid, state="finished", exit_code=exit_code, epoch=job.epoch,
                        time=h.now, **status))


def test_every_kind_with_records(ctld):
    h = ctld({"CraneCtld": {"JobRequeue": True}})
    h.register_all()
    done = h.submit(name="done")
    held = h.submit(name="held", hold=True)
    h.ctl.schedule_cycle()
    _run(h, done, exit_code=3, cpu_time_ms=1234, mem_peak=5 << 20)
    admin = Identity(h.me.uid, h.me.user, admin_level="admin")
    h.ctl.modify([held], h.me, time_limit=600)
    h.ctl.modify([held], h.me, hold=False)
    h.ctl.modify([held], admin, priority=7)
    h.ctl.schedule_cycle()
    job = h.ctl.jobs[held]
    h.feed(m.StepStatus(node=job.head_node, job_id=held, state="running", epoch=job.epoch, time=h.now))
    h.ctl.cancel([held], h.me)
    lost = h.submit(name="lost")
    waits = h.submit(name="waits")
    assert h.ctl.modify([waits], h.me, hold=True)[0] == [waits]
    h.ctl.schedule_cycle()
    lost_node = h.ctl.jobs[lost].head_node
    h.feed(m.StepStatus(node=lost_node, job_id=lost, state="running", epoch=h.ctl.jobs[lost].epoch, time=h.now))
    assert h.ctl.set_drain(["cn04"], True, "fan", admin)[0] == ["cn04"]
    h.ctl.set_drain(["cn04"], False, "", admin)
    h.now += h.cfg.CraneCtld.CranedTimeout + 1
    others = [n for n in h.ctl.nodes if n != lost_node]
    h.feed(*[m.NodeHeartbeat(node=n, time=h.now) for n in others])
    h.ctl.schedule_cycle()  # lost_node missed its heartbeats: DOWN, its job requeued
    evs = _events(h)
    seqs = [e.seq for e in evs]
    assert seqs == list(range(1, len(evs) + 1))
    kinds = {e.kind for e in evs}
    assert kinds == (JOB_KINDS - {"job.preempted"}) | STEP_KINDS | NODE_KINDS  # job.preempted: test_preempt_ctl.py
    assert all(isinstance(e, JobEvent) for e in evs if e.kind.startswith("job."))
    assert all(isinstance(e, StepEvent) for e in evs if e.kind.startswith("step."))
    assert all(isinstance(e, NodeEvent) for e in evs if e.kind.startswith("node."))

    def of(jid: int) -> list[Any]:
        return [e for e in evs if getattr(e, "job_id", None) == jid]

    assert [e.kind for e in of(done)] == ["job.submitted", "job.started", "step.started", "step.ended", "job.ended"]
    end = of(done)[-1]
    assert (end.job.state, end.job.exit_code, end.job.cpu_time_ms, end.job.mem_peak_bytes) == ("Failed", 3, 1234,
                                                                                              5 << 20)
    assert end.job.name == "done" and end.job.user == h.me.user and end.job.partition == "debug"
    assert end.job.nodes and end.job.start_time and end.job.end_time >= end.job.start_time
    step_end = of(done)[-2]
    assert (step_end.step_id, step_end.state, step_end.exit_code, step_end.cpu_time_ms) == (0, "Failed", 3, 1234)
    assert of(done)[0].actor == h.me.user
    held_kinds = [e.kind for e in of(held)]
    assert held_kinds[:4] == ["job.submitted", "job.modified", "job.released", "job.modified"]
    assert of(held)[1].changes == {"time_limit": 600} and of(held)[1].job.time_limit == 600
    assert of(held)[2].changes == {"held": False}
    assert held_kinds[-2:] == ["job.started", "step.started"] or "job.cancelled" in held_kinds
    cancelled = next(e for e in of(held) if e.kind == "job.cancelled")
    assert cancelled.actor == h.me.user
    lost_kinds = [e.kind for e in of(lost)]
    assert lost_kinds[-2:] == ["step.ended", "job.requeued"]
    assert of(lost)[-1].changes["reason"].startswith(f"node {lost_node} down")
    nodes = [(e.kind, e.node) for e in evs if e.kind.startswith("node.")]
    assert ("node.registered", "cn01") in nodes and ("node.down", lost_node) in nodes
    drained = next(e for e in evs if e.kind == "node.drained")
    assert (drained.node, drained.reason, drained.actor) == ("cn04", "fan", admin.user)
    assert [e.kind for e in of(waits)] == ["job.submitted", "job.held"] and of(waits)[1].changes == {"held": True}
    reg = next(e for e in evs if e.kind == "node.registered")
    assert reg.cpus == 4 and reg.memory == 8 << 30


def test_event_models_in_the_outbox_list_on_request(ctld):
    h = ctld()
    h.ctl.event_models = True
    jid = h.submit()
    (ev,) = h.sent(JobEvent)
    assert (ev.kind, ev.job_id, ev.seq) == ("job.submitted", jid, 1)
    assert m.decode(h.store.outbox_rows()[0][1]) == ev


def test_events_commit_with_their_change_and_seq_survives(ctld, tmp_path):
    from crane_kernel.ctld.core import Controller
    from crane_kernel.ctld.store import StateStore

    h = ctld()
    h.submit()
    assert [e.kind for e in _events(h)] == ["job.submitted"]
    assert h.store.take_committed()[0][0] == 1  # handed to the publisher once committed
    h.store.mark_published(1)
    h.submit()  # the next transaction deletes the published row
    assert [s for s, _ in h.store.outbox_rows()] == [2]
    store = StateStore(h.store.path)
    ctl = Controller(h.cfg, store, h.pm, lambda outbox: None)
    assert ctl.event_seq == 2
    store.close()


def test_job_record_mail_slot(ctld):
    h = ctld()
    job = h.ctl.jobs[h.submit(name="x" * 256)]
    rec = job_record(job)
    assert rec.mail_type == [] and rec.mail_user == "" and len(rec.name) == 255
    assert rec.cpus == job.cpus_per_node * job.node_num and rec.mem_per_node == job.mem_per_node

    class WithMail:
        def __init__(self, job: Any) -> None:
            self.__dict__.update({k: getattr(job, k) for k in type(job).__slots__ + type(job).__mro__[1].__slots__})
            self.mail = (("BEGIN", "END"), "alice@example.org")

    rec = job_record(WithMail(job))
    assert rec.mail_type == ["BEGIN", "END"] and rec.mail_user == "alice@example.org"


def test_message_ids_are_unique_in_a_process_and_across_a_fork() -> None:
    import os

    from crane_kernel.messages import new_id

    mine = [new_id() for _ in range(10_000)]
    assert len(set(mine)) == len(mine) and all(0 < len(i) <= 64 for i in mine)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked child (a supervisor) draws its own prefix
        os.write(write, "\n".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    theirs = os.read(read, 1 << 16).decode().split("\n")
    os.close(read)
    later = [new_id() for _ in range(100)]
    assert len(theirs) == 100 and not set(theirs) & set(mine + later)
