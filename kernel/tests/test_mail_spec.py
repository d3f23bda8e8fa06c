"""--mail-type/--mail-user in the controller: checked and canonicalised at submission, kept in the stored
spec, one ``mail`` slot on the job record (None without mail), restored at recovery, free in memory."""

from __future__ import annotations

import os
import pwd
import sys

import pytest
from crane_common.mail import check_mail_user, parse_mail_types
from crane_kernel.ctld.jobs import Job, job_from_spec, recheck_spec
from crane_kernel.ctld.speccheck import normalize_mail
from crane_kernel.errors import JobRejected

ME = pwd.getpwuid(os.getuid())


def test_parse_mail_types_canonical_order_aliases_and_all():
    assert parse_mail_types("end,fail") == ("END", "FAIL")
    assert parse_mail_types(["fail", "End", "END"]) == ("END", "FAIL")
    assert parse_mail_types("TIMELIMIT,begin") == ("BEGIN", "TIME_LIMIT")
    assert parse_mail_types("all") == ("BEGIN", "END", "FAIL", "REQUEUE")
    assert parse_mail_types("ALL,TIME_LIMIT,OOM") == ("BEGIN", "END", "FAIL", "REQUEUE", "TIME_LIMIT", "OOM")
    assert parse_mail_types("NONE") == () == parse_mail_types([]) == parse_mail_types("")


@pytest.mark.parametrize("value,message", [
    ("SOMETIMES", "unknown mail type 'SOMETIMES'"), ("NONE,END", "NONE cannot be combined"),
    (["END"] * 17, "at most 16"), ("END," * 20, "at most 16"), ([1], "must be text"),
    ("BEGIN,\x1b[31m", "unknown mail type"),
])
def test_parse_mail_types_refuses(value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")) as exc:
        parse_mail_types(value)
    assert "\n" not in str(exc.value) and "\x1b" not in str(exc.value)


@pytest.mark.parametrize("addr", ["alice", "alice@example.org", "a.b+tag@mail.example.co.uk", "x_y-1@h"])
def test_mail_user_shapes_accepted(addr):
    assert check_mail_user(addr) == addr


@pytest.mark.parametrize("addr", ["", "a b@c", "a@b@c", "a,b@c", "a@b;c", "<a@b>", "a@b\r\nBcc: x@y", "a@",
                                  "@b", "a@-b.c", "a@b..c", ".a@b", "a..b@c", "x" * 250 + "@b.cd", "ä@b", 5])
def test_mail_user_shapes_refused(addr):
    with pytest.raises(ValueError) as exc:
        check_mail_user(addr)
    assert "\n" not in str(exc.value)


def test_normalize_mail_defaults_and_canonical_form():
    spec = {"mail_type": ["end", "TIMELIMIT"]}
    normalize_mail(spec, "alice")
    assert spec == {"mail_type": ["END", "TIME_LIMIT"], "mail_user": "alice"}
    spec = {"mail_type": ["ALL"], "mail_user": "bob@example.org"}
    normalize_mail(spec, "alice")
    assert spec == {"mail_type": ["BEGIN", "END", "FAIL", "REQUEUE"], "mail_user": "bob@example.org"}
    spec = {"mail_type": ["NONE"], "mail_user": "bob@example.org"}  # no mail; the recipient is still checked
    normalize_mail(spec, "alice")
    assert spec == {"mail_user": "bob@example.org"}
    spec = {"mail_type": [], "mail_user": ""}
    normalize_mail(spec, "alice")
    assert spec == {}


@pytest.mark.parametrize("spec,message", [
    ({"mail_type": ["SOMETIMES"]}, "unknown mail type"), ({"mail_type": ["END"], "mail_user": "a b"}, "one address"),
    ({"mail_type": {"END": 1}}, "list of names"), ({"mail_type": ["END"] * 40}, "at most 16"),
])
def test_normalize_mail_refuses(spec, message):
    with pytest.raises(JobRejected, match=message):
        normalize_mail(spec, "alice")


def test_submission_keeps_mail_in_the_stored_spec_and_the_slot(ctld):
    h = ctld()
    plain = h.submit()
    mailed = h.submit(mail_type=["end", "fail"])
    other = h.submit(mail_type=["ALL"], mail_user="team@example.org")
    assert h.ctl.jobs[plain].mail is None
    assert h.ctl.jobs[mailed].mail == (("END", "FAIL"), ME.pw_name)
    assert h.ctl.jobs[other].mail == (("BEGIN", "END", "FAIL", "REQUEUE"), "team@example.org")
    rows = {jid: spec for jid, spec, _rt in h.store.jobs_by_id([plain, mailed, other])}
    assert "mail_type" not in rows[plain] and "mail_user" not in rows[plain]
    assert rows[mailed]["mail_type"] == ["END", "FAIL"] and rows[mailed]["mail_user"] == ME.pw_name
    with pytest.raises(JobRejected, match="unknown mail type"):
        h.submit(mail_type=["SOMETIMES"])
    with pytest.raises(JobRejected, match="invalid mail request: the mail user"):
        h.submit(mail_type=["END"], mail_user="a@b, c@d")


def test_mail_slot_is_restored_at_recovery(ctld):
    from crane_kernel.ctld.core import Controller

    h = ctld()
    plain, mailed = h.submit(), h.submit(mail_type=["BEGIN"], mail_user="a@b.org")
    again = Controller(h.cfg, h.store, h.pm, [].extend, clock=lambda: h.now)
    again.recover()
    assert again.jobs[plain].mail is None
    assert again.jobs[mailed].mail == (("BEGIN",), "a@b.org")


def test_same_types_share_one_tuple():
    a = job_from_spec(1, _spec(mail_type=["END", "FAIL"], mail_user="x"))
    b = job_from_spec(2, _spec(mail_type=["END", "FAIL"], mail_user="y"))
    assert a.mail[0] is b.mail[0]


def test_a_job_filter_cannot_slip_in_a_bad_mail_request():
    spec = _spec(mail_type=["END"], mail_user="ok@example.org")
    spec["mail_user"] = "x@y\nBcc: z@w"
    with pytest.raises(JobRejected):
        _recheck(spec)
    spec = _spec()
    spec["mail_type"] = ["all"]  # a filter may add mail: canonicalised, mailed to the owner
    _recheck(spec)
    assert spec["mail_type"] == ["BEGIN", "END", "FAIL", "REQUEUE"] and spec["mail_user"] == ME.pw_name


def test_the_mail_slot_costs_no_memory_per_job():
    """The record stays in the allocator's size class (16-byte steps) it had without the slot."""
    with_slot = sys.getsizeof(job_from_spec(1, _spec()))
    without = with_slot - 8  # one pointer less
    assert -(-with_slot // 16) == -(-without // 16), (with_slot, without)
    assert "mail" in Job.__slots__


def _spec(**extra):
    spec = {"partition": "debug", "node_num": 1, "cpus_per_node": 1.0, "mem_per_node": 1 << 30, "time_limit": 60,
            "submit_time": 0.0, "user": ME.pw_name, "uid": ME.pw_uid, "gid": ME.pw_gid, "ntasks_per_node": 1,
            "cpus_per_task": 1.0, "script": "#!/bin/bash\n"}
    spec.update(extra)
    return spec


def _recheck(spec):
    from crane_kernel.config import parse_config

    cfg = parse_config({"Nodes": [{"name": "cn01", "cpu": 4, "memory": "8G"}],
                        "Partitions": [{"name": "debug", "nodes": "ALL"}]})
    recheck_spec(spec, cfg, ME.pw_uid, ME.pw_name, ME.pw_gid)
