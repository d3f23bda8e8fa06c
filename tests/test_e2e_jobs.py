"""End to end: real Redis, cranectld, 3 craned virtual nodes, real cgroups, the real CLI."""

from __future__ import annotations

import json
import os

import pytest
from crane_common.states import EC_EXCEED_TIME_LIMIT, EC_TERMINATED, JobState
from crane_e2e import cgroups_writable, ensure_user

pytestmark = pytest.mark.e2e

needs_cgroups = pytest.mark.skipif(not cgroups_writable(),
                                   reason="LOUD SKIP: root cannot write cgroup v1 here; enforcement untested")


def test_batch_job_runs_with_crane_environment(cluster):
    jid = cluster.cbatch("-J", "envjob", "-o", "env-%j.out",
                         "--wrap", "echo ID=$CRANE_JOB_ID NAME=$CRANE_JOB_NAME NL=$CRANE_JOB_NODELIST "
                                   "NN=$CRANE_JOB_NUM_NODES SD=$CRANE_SUBMIT_DIR; pwd")
    info = cluster.wait_done(jid)
    assert info.status == JobState.Completed and info.exit_code == 0
    out = cluster.output(f"env-{jid}.out")
    assert f"ID={jid} NAME=envjob" in out
    assert "NN=1" in out and "NL=cn0" in out
    assert f"SD={cluster.workdir}" in out
    assert out.strip().endswith(cluster.workdir)


def test_jobs_get_slurms_variables_beside_cranes(cluster):
    jid = cluster.cbatch("-N", "2", "-o", "slurm-%j.out", "--wrap",
                         "echo $SLURM_JOB_ID $SLURM_JOBID $SLURM_JOB_NUM_NODES $SLURM_NNODES $SLURM_JOB_NODELIST "
                         "$SLURM_NTASKS $SLURM_CPUS_PER_TASK $SLURM_JOB_PARTITION")
    assert cluster.wait_done(jid).status == JobState.Completed
    out = cluster.output(f"slurm-{jid}.out").split()
    assert out[:4] == [str(jid), str(jid), "2", "2"] and out[4].startswith("cn[") and out[5:] == ["2", "1", "debug"]


def test_exit_code_and_failed_state(cluster):
    jid = cluster.cbatch("--wrap", "exit 3")
    info = cluster.wait_done(jid)
    assert info.status == JobState.Failed
    assert info.exit_code == 3


def test_multi_node_job_gets_two_nodes(cluster):
    jid = cluster.cbatch("-N", "2", "-c", "1", "-o", "mn-%j.out",
                         "--wrap", "echo $CRANE_JOB_NUM_NODES $CRANE_JOB_NODELIST")
    info = cluster.wait_done(jid)
    assert info.status == JobState.Completed
    n, nodelist = cluster.output(f"mn-{jid}.out").split()
    assert n == "2"
    assert nodelist.startswith("cn[") and info.craned_list == nodelist


def test_output_patterns_and_error_file(cluster):
    jid = cluster.cbatch("-J", "pat", "-o", "o-%x-%u-%j.txt", "-e", "e-%j.txt", "--wrap", "echo out; echo err >&2")
    cluster.wait_done(jid)
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    assert cluster.output(f"o-pat-{user}-{jid}.txt") == "out\n"
    assert cluster.output(f"e-{jid}.txt") == "err\n"


def test_script_file_with_directives(cluster, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#CBATCH -J fromscript\n#CBATCH -o script-%j.out\necho directive-ok\n")
    jid = cluster.cbatch(str(script))
    info = cluster.wait_done(jid)
    assert info.name == "fromscript"
    assert cluster.output(f"script-{jid}.out") == "directive-ok\n"


@needs_cgroups
def test_memory_limit_kills_job_out_of_memory(cluster):
    jid = cluster.cbatch("--mem", "50M", "--wrap", "python3 -c 'b = bytearray(200*1024*1024); print(len(b))'")
    info = cluster.wait_done(jid)
    assert info.status == JobState.OutOfMemory


@needs_cgroups
def test_job_within_memory_is_not_killed(cluster):
    jid = cluster.cbatch("--mem", "200M", "--wrap", "python3 -c 'b = bytearray(50*1024*1024)'")
    assert cluster.wait_done(jid).status == JobState.Completed


def test_time_limit_is_enforced(cluster):
    jid = cluster.cbatch("-t", "00:00:02", "--wrap", "sleep 60")
    info = cluster.wait_done(jid, timeout=20)
    assert info.status == JobState.ExceedTimeLimit
    assert info.exit_code == EC_EXCEED_TIME_LIMIT


def test_cancel_running_and_pending(cluster):
    running = cluster.cbatch("--wrap", "sleep 60")
    cluster.wait_running(running)
    held = cluster.cbatch("-H", "--wrap", "true")
    proc = cluster.run("ccancel", f"{running},{held}")
    assert proc.returncode == 0, proc.stderr
    assert "cancelled successfully" in proc.stdout
    r = cluster.wait_done(running, timeout=15)
    assert r.status == JobState.Cancelled and r.exit_code == EC_TERMINATED
    assert cluster.wait_done(held).status == JobState.Cancelled


def test_repeat_submits_many(cluster):
    proc = cluster.run("cbatch", "--repeat", "5", "--wrap", "true")
    assert proc.returncode == 0, proc.stderr
    ids = [int(x) for x in proc.stdout.split("allocated:")[1].strip().rstrip(".").split(",")]
    assert len(ids) == 5 and ids == sorted(ids)
    for jid in ids:
        assert cluster.wait_done(jid).status == JobState.Completed


def test_hold_then_release(cluster):
    jid = cluster.cbatch("-H", "--wrap", "true")
    info = cluster.job(jid)
    assert info.status == JobState.Pending and info.pending_reason == "Held"
    reply = cluster.client.modify([jid], hold=False)
    assert list(reply.modified) == [jid]
    assert cluster.wait_done(jid).status == JobState.Completed


def test_nodelist_and_exclude(cluster):
    jid = cluster.cbatch("-w", "cn03", "--wrap", "true")
    assert cluster.wait_done(jid).craned_list == "cn03"
    jid = cluster.cbatch("-x", "cn[01-02]", "--wrap", "true")
    assert cluster.wait_done(jid).craned_list == "cn03"


def test_fifo_head_blocks_and_reasons(cluster):
    # fill every node, then queue a whole-node job and a small one behind it
    fillers = [cluster.cbatch("-c", "2", "-w", f"cn0{i}", "--wrap", "sleep 4") for i in (1, 2, 3)]
    for f in fillers:
        cluster.wait_running(f)
    head = cluster.cbatch("-c", "2", "--wrap", "true")
    behind = cluster.cbatch("-c", "1", "--wrap", "true")
    cluster.wait_state(head, lambda i: i.pending_reason == "Resource")
    cluster.wait_state(behind, lambda i: i.pending_reason == "Priority")
    out = cluster.run("cqueue", "-j", f"{head},{behind}").stdout
    assert "Resource" in out and "Priority" in out
    h, b = cluster.wait_done(head), cluster.wait_done(behind)
    assert h.start_time <= b.start_time


def test_exclusive_takes_a_whole_node(cluster):
    excl = cluster.cbatch("--exclusive", "-c", "1", "--wrap", "sleep 3")
    info = cluster.wait_running(excl)
    node = info.craned_list
    other = cluster.cbatch("-w", node, "-c", "1", "--wrap", "true")
    cluster.wait_state(other, lambda i: i.status == JobState.Pending and i.pending_reason in ("Resource",))
    done_other = cluster.wait_done(other)
    assert done_other.start_time >= cluster.wait_done(excl).end_time - 1


def test_cqueue_cinfo_json(cluster):
    jid = cluster.cbatch("--wrap", "sleep 3")
    cluster.wait_running(jid)
    q = json.loads(cluster.run("cqueue", "--json").stdout)
    assert any(int(j["job_id"]) == jid for j in q["jobs"])
    info = cluster.run("cinfo")
    assert info.returncode == 0 and "PARTITION" in info.stdout and "debug" in info.stdout
    cluster.wait_done(jid)


def test_jobs_run_as_the_submitting_user(cluster):
    alice = ensure_user("crane_e2e_alice")
    token = cluster.lc.token(alice.pw_name, alice.pw_uid)
    env = {"CRANE_TOKEN": token}
    jid = cluster.cbatch("-o", "alice-%j.out", "--wrap", "id -u; id -g; whoami; echo $USER", env=env)
    info = cluster.wait_done(jid)
    assert info.status == JobState.Completed, info
    assert info.user == "crane_e2e_alice"
    out = cluster.output(f"alice-{jid}.out").split()
    assert out == [str(alice.pw_uid), str(alice.pw_gid), "crane_e2e_alice", "crane_e2e_alice"]
    assert os.stat(os.path.join(cluster.workdir, f"alice-{jid}.out")).st_uid == alice.pw_uid


def test_user_cannot_cancel_someone_elses_job(cluster):
    alice, bob = ensure_user("crane_e2e_alice"), ensure_user("crane_e2e_bob")
    a_env = {"CRANE_TOKEN": cluster.lc.token(alice.pw_name, alice.pw_uid)}
    b_env = {"CRANE_TOKEN": cluster.lc.token(bob.pw_name, bob.pw_uid)}
    jid = cluster.cbatch("-H", "--wrap", "true", env=a_env)
    proc = cluster.run("ccancel", str(jid), env=b_env)
    assert proc.returncode == 4
    assert "Failed to cancel job" in proc.stdout + proc.stderr
    assert cluster.job(jid).status == JobState.Pending
    # the owner may
    assert cluster.run("ccancel", str(jid), env=a_env).returncode == 0
    assert cluster.wait_done(jid).status == JobState.Cancelled


def test_forged_token_is_rejected(cluster):
    from crane_auth_rbac import jwt_tokens

    foreign = jwt_tokens.Keyring([jwt_tokens.Key(jwt_tokens.read_keyring(cluster.lc.cfg.key_file).signing.kid,
                                                 b"not-the-cluster-key" * 2, 0)])
    forged = jwt_tokens.mint(foreign, cluster.lc.cfg.ClusterName, 0, "root", "root")
    proc = cluster.run("cqueue", env={"CRANE_TOKEN": forged})
    assert proc.returncode == 3
    assert "Access denied" in proc.stderr


def test_ccontrol_priority_hold_and_drain(cluster):
    alice = ensure_user("crane_e2e_alice")
    a_env = {"CRANE_TOKEN": cluster.lc.token(alice.pw_name, alice.pw_uid)}
    jid = cluster.cbatch("-H", "--wrap", "true", env=a_env)
    # only an admin may pin a priority
    proc = cluster.run("ccontrol", "update", f"jobid={jid}", "priority=5000", env=a_env)
    assert proc.returncode == 1 and "Permission denied" in proc.stderr
    proc = cluster.run("ccontrol", "update", f"jobid={jid}", "priority=5000")
    assert proc.returncode == 0, proc.stderr
    shown = cluster.run("ccontrol", "show", "job", str(jid)).stdout
    assert "Priority=5000" in shown and "JobState=Pending" in shown and "Reason=Held" in shown
    # the owner may release their own job
    assert cluster.run("ccontrol", "release", str(jid), env=a_env).returncode == 0
    assert cluster.wait_done(jid).status == JobState.Completed
    # drain and resume a node
    assert cluster.run("ccontrol", "update", "nodeName=cn02", "state=drain").returncode == 2   # reason required
    assert cluster.run("ccontrol", "update", "nodeName=cn02", "state=drain", "reason=disk").returncode == 0
    assert "(drain)[power_active]" in cluster.run("ccontrol", "show", "node", "cn02").stdout  # upstream's block
    assert cluster.run("ccontrol", "update", "nodeName=cn02", "state=resume").returncode == 0
    assert "(drain)" not in cluster.run("ccontrol", "show", "node", "cn02").stdout


def test_export_none_and_extra_variables(cluster):
    env = {"E2E_MARK": "from-submit-shell", "CRANE_E2E_KEEP": "always"}
    full = cluster.cbatch("-o", "exp-all-%j.out", "--wrap", "echo mark=$E2E_MARK", env=env)
    none = cluster.cbatch("--export", "NONE", "-o", "exp-none-%j.out", "--wrap",
                          "echo mark=$E2E_MARK id=$CRANE_JOB_ID keep=$CRANE_E2E_KEEP", env=env)
    extra = cluster.cbatch("--export", "NONE,FOO=bar", "-o", "exp-extra-%j.out", "--wrap", "echo foo=$FOO", env=env)
    for jid in (full, none, extra):
        assert cluster.wait_done(jid).status == JobState.Completed
    assert cluster.output(f"exp-all-{full}.out").strip() == "mark=from-submit-shell"
    # NONE drops the submit environment but keeps the CRANE_* variables (as CraneSched does)
    assert cluster.output(f"exp-none-{none}.out").strip() == f"mark= id={none} keep=always"
    assert cluster.output(f"exp-extra-{extra}.out").strip() == "foo=bar"


def test_fractional_cpus_set_the_cpu_quota(cluster):
    jid = cluster.cbatch("-c", "0.5", "-o", "frac-%j.out", "--wrap",
                         "cat /sys/fs/cgroup/cpu/$(grep ':cpu:\\|:cpu,cpuacct:' /proc/self/cgroup | cut -d: -f3)/"
                         "cpu.cfs_quota_us")
    info = cluster.wait_done(jid)
    assert info.status == JobState.Completed and info.cpus_per_task == 0.5
    assert cluster.output(f"frac-{jid}.out").strip() == "50000"


def test_an_afterok_chain_runs_in_order_and_a_failed_parent_leaves_its_child_never_satisfied(cluster):
    log = os.path.join(cluster.workdir, "chain.log")
    first = cluster.cbatch("--wrap", f"sleep 1; echo first >> {log}")
    second = cluster.cbatch("-d", f"afterok:{first}", "--wrap", f"echo second >> {log}")
    script = os.path.join(cluster.workdir, "third.sh")
    with open(script, "w") as fh:
        fh.write(f"#!/bin/bash\n#SBATCH --dependency=afterok:{second}\necho third >> {log}\n")
    third = cluster.cbatch(script)
    assert cluster.job(third).pending_reason == "Dependency"
    assert cluster.wait_done(third, timeout=60).status == JobState.Completed
    with open(log) as fh:
        assert fh.read().split() == ["first", "second", "third"]
    bad = cluster.cbatch("--wrap", "exit 1")
    child = cluster.cbatch("-d", f"afterok:{bad}", "--wrap", "true")
    info = cluster.wait_done(child, timeout=60)
    assert info.status == JobState.Cancelled and info.pending_reason == "DependencyNeverSatisfied"
    refused = cluster.run("cbatch", "-d", "afterok:99999", "--wrap", "true")
    assert refused.returncode == 4 and "does not exist" in refused.stderr
