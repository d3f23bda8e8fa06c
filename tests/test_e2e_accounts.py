"""Accounts, users, QoS and their limits end to end: ``cacctmgr`` against a real cluster.

The admin (root on the controller host) builds an account tree with ``cacctmgr``; the users are
real unprivileged Linux users with their own tokens, running the real CLIs; the limits are
enforced by the real controller and the real scheduler (``Accounting.Enforce`` all on). Each test
asserts what a user sees: the exit code, the one-line error, the pending reason in ``cqueue``,
and the account database as ``cacctmgr show --json`` prints it.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from crane_e2e import cli, running_cluster
from test_e2e_limits_security import User, _refused

pytestmark = pytest.mark.e2e

ALICE, BOB, CAROL, DAVE = "crane_e2e_alice", "crane_e2e_bob", "crane_e2e_carol", "crane_e2e_dave"


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(nodes=2, cpus=2, Accounting={"Enforce": ["associations", "qos", "limits"]}) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def users(cluster):
    return {name: User(cluster, name) for name in (ALICE, BOB, CAROL, DAVE)}


def admin(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cacctmgr`` as the cluster's admin (root with the host's token)."""
    proc = subprocess.run([cli("cacctmgr"), *args], env=cluster.lc.env(), capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def show(cluster, entity: str, *names: str) -> dict:
    """``cacctmgr show <entity> [names] --json`` as the admin, parsed."""
    return json.loads(admin(cluster, "show", entity, *names, "--json").stdout)


@pytest.fixture(scope="module")
def tree(cluster, users):
    """qos ``small`` (1 running, 3 submitted per user, 1 h per job), ``strict`` (DenyOnLimit);
    accounts ``phys`` (default QoS small) with sub-account ``phys-hep``, and ``chem``;
    alice and bob in phys, bob coordinates phys, carol in chem; dave in no account."""
    admin(cluster, "add", "qos", "small", "Priority=10", "MaxJobsPerUser=1", "MaxSubmitJobsPerUser=3",
          "MaxTimeLimitPerJob=1:00:00")
    admin(cluster, "add", "qos", "strict", "MaxTimeLimitPerJob=0:30:00", "Flags=DenyOnLimit")
    admin(cluster, "add", "account", "phys", "Description=physics", "QosList=small,strict,UNLIMITED",
          "DefaultQos=small")
    admin(cluster, "add", "account", "phys-hep", "Parent=phys", "QosList=small", "DefaultQos=small")
    admin(cluster, "add", "account", "chem", "QosList=UNLIMITED", "DefaultQos=UNLIMITED")
    admin(cluster, "add", "user", ALICE, "Account=phys")
    admin(cluster, "add", "user", BOB, "Account=phys", "Coordinator=true")
    admin(cluster, "add", "user", CAROL, "Account=chem")
    return users


def _job(user: User, job_id: int) -> dict:
    proc = user.run("cqueue", "-j", str(job_id), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jobs = data["job_info_list"]
    assert jobs, data
    return jobs[0]


def _wait_for(pred, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


# --- the account database -----------------------------------------------------------------------

def test_the_tree_as_cacctmgr_shows_it(cluster, tree):
    """The admin's adds are what ``show`` prints, in text and in upstream's JSON shape."""
    accounts = {a["name"]: a for a in show(cluster, "account")["account_list"]}
    assert accounts["phys"]["child_accounts"] == ["phys-hep"] and accounts["phys-hep"]["parent_account"] == "phys"
    assert accounts["phys"]["coordinators"] == [BOB] and sorted(accounts["phys"]["users"]) == [ALICE, BOB]
    qos = show(cluster, "qos", "small")["qos_list"][0]
    assert (qos["max_jobs_per_user"], qos["max_submit_jobs_per_user"], qos["max_time_limit_per_job"]) == \
        (1, 3, "3600")
    assert qos["max_jobs"] == 4294967295  # upstream's "unlimited"
    text = admin(cluster, "show", "qos", "small", "format=Name,MaxJobsPerUser,MaxJobs").stdout.split()
    assert text == ["NAME", "MAXJOBSPERUSER", "MAXJOBS", "small", "1", "unlimited"]
    bad = admin(cluster, "show", "qos", "format=Name,Bogus", check=False)
    assert bad.returncode == 5 and "Bogus" in bad.stderr


def test_a_user_outside_the_database_cannot_submit(cluster, tree):
    _refused(tree[DAVE].run("cbatch", "--wrap", "true"), 4, "not in the account database")


def test_default_account_and_qos_and_foreign_account(cluster, tree):
    """No -A: her default account and its default QoS; an account she is not in is refused."""
    alice = tree[ALICE]
    jid = alice.cbatch("-H", "--wrap", "true")
    job = cluster.job(jid)
    assert (job.account, job.qos) == ("phys", "small")
    assert job.time_limit == 3600  # no -t: the QoS's per-job maximum, not "unlimited" (Slurm's rule)
    _refused(alice.run("cbatch", "-A", "chem", "--wrap", "true"), 4, "not in account 'chem'")
    _refused(alice.run("cbatch", "-q", "nosuch", "--wrap", "true"), 4, "nosuch")
    assert alice.run("ccancel", str(jid)).returncode == 0


def test_qos_limits_at_submit_and_at_schedule_time(cluster, tree):
    """MaxJobsPerUser=1: her second job waits with QosJobsResourceLimit and starts when the first
    ends, though CPUs are free; MaxSubmitJobsPerUser=3: the fourth submission is refused."""
    alice = tree[ALICE]
    first = alice.cbatch("--wrap", "sleep 30", "-c", "1")
    second = alice.cbatch("--wrap", "sleep 1", "-c", "1")
    cluster.wait_state(first, lambda j: j.status == 1)  # Running
    cluster.wait_state(second, lambda j: j.pending_reason == "QosJobsResourceLimit")
    third = alice.cbatch("-H", "--wrap", "true")
    _refused(alice.run("cbatch", "--wrap", "true"), 4, "MaxSubmitJobsPerUser")
    # bob, same QoS, is not held back by alice's usage
    other = tree[BOB].cbatch("--wrap", "sleep 1", "-c", "1")
    cluster.wait_state(other, lambda j: j.status in (1, 2))
    assert alice.run("ccancel", str(first)).returncode == 0
    cluster.wait_state(second, lambda j: j.status in (1, 2), timeout=30)
    assert alice.run("ccancel", str(third)).returncode == 0


def test_time_limits_against_the_qos(cluster, tree):
    """Over the per-job maximum: waits with QosWallTimeLimit (no DenyOnLimit), refused with it;
    her own later change can never go past it either."""
    alice = tree[ALICE]
    waiting = alice.cbatch("-t", "2:00:00", "--wrap", "true")
    cluster.wait_state(waiting, lambda j: j.pending_reason == "QosWallTimeLimit")
    _refused(alice.run("cbatch", "-q", "strict", "-t", "1:00:00", "--wrap", "true"), 4, "strict")
    held = alice.cbatch("-H", "-t", "0:10:00", "--wrap", "true")
    proc = alice.run("ccontrol", "update", f"jobid={held}", "timelimit=3:00:00")
    assert proc.returncode != 0 and cluster.job(held).time_limit == 600
    for jid in (waiting, held):
        alice.run("ccancel", str(jid))


def test_users_cannot_manage_the_database(cluster, tree):
    """A plain member may read but not change anything, nor raise her own admin level."""
    alice = tree[ALICE]
    assert alice.run("cacctmgr", "show", "account").returncode == 0
    for args in (("add", "account", "mine"), ("add", "qos", "fast", "Priority=1000"),
                 ("modify", "user", "where", f"Name={ALICE}", "set", "AdminLevel=admin"),
                 ("modify", "qos", "where", "Name=small", "set", "MaxJobsPerUser=100"),
                 ("block", "user", BOB, "Account=phys"), ("delete", "account", "chem")):
        proc = alice.run("cacctmgr", *args)
        assert proc.returncode == 4, (args, proc.stdout, proc.stderr)
    assert show(cluster, "qos", "small")["qos_list"][0]["max_jobs_per_user"] == 1
    assert ALICE not in {u["name"] for u in show(cluster, "user")["user_list"] if u["admin_level"] != "None"}


def test_a_coordinator_manages_her_account_only(cluster, tree):
    """bob coordinates phys: he adds carol to phys, blocks and unblocks alice there, and cannot
    touch chem or the QoS."""
    bob, alice, carol = tree[BOB], tree[ALICE], tree[CAROL]
    assert bob.run("cacctmgr", "add", "user", CAROL, "Account=phys").returncode == 0
    assert bob.run("cacctmgr", "block", "user", ALICE, "Account=phys").returncode == 0
    _refused(alice.run("cbatch", "--wrap", "true"), 4, "blocked")
    assert bob.run("cacctmgr", "unblock", "user", ALICE, "Account=phys").returncode == 0
    jid = alice.cbatch("-H", "--wrap", "true")
    assert bob.run("ccancel", str(jid)).returncode == 0  # a coordinator may cancel his account's jobs
    assert bob.run("cacctmgr", "block", "account", "chem").returncode == 4
    assert bob.run("cacctmgr", "modify", "qos", "where", "Name=small", "set", "MaxJobs=5").returncode == 4
    assert bob.run("cacctmgr", "delete", "user", CAROL, "Account=chem").returncode == 4
    assert carol.cbatch("-A", "phys", "-H", "--wrap", "true")


def test_blocked_account_and_the_transaction_log(cluster, tree):
    admin(cluster, "block", "account", "chem")
    _refused(tree[CAROL].run("cbatch", "-A", "chem", "--wrap", "true"), 4, "blocked")
    admin(cluster, "unblock", "account", "chem")
    log = json.loads(admin(cluster, "show", "transaction", "--json").stdout)["txn_log_list"]
    seen = {(t["actor"], t["action"], t["target"]) for t in log}
    assert ("root", "AddQos", "small") in seen and ("root", "AddAccount", "phys") in seen
    assert (BOB, "AddUser", CAROL) in seen  # the coordinator's change, under his name
    assert tree[ALICE].run("cacctmgr", "show", "transaction").returncode == 4  # operators and up only
