"""End to end: Slurm pipeline scripts run unchanged through the Slurm wrappers (compat/slurm) on a real cluster.

The wrappers are installed as links in a private directory (``crane-slurm install DIR``) and that
directory is put first on PATH, as a site would; the scripts then call ``sbatch``, ``squeue``,
``sacct``, ``scancel``, ``sinfo``, ``scontrol`` and ``srun`` by name against real daemons.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest
from crane_e2e import cli, ensure_user, run_as

pytestmark = pytest.mark.e2e

WAIT_DONE = """
wait_done() {  # poll squeue as Slurm users do, until the job is no longer pending or running
  for _ in $(seq 1 600); do
    st=$(squeue -h -j "$1" -o %T)
    case "$st" in PENDING|RUNNING|CONFIGURING|COMPLETING|"") sleep 0.1 ;; *) echo "$st"; return 0 ;; esac
  done
  echo "TIMEOUT-WAITING"; return 1
}
"""


@pytest.fixture(scope="module")
def slurm_bin(tmp_path_factory) -> str:
    """A directory with the Slurm-named links (what ``crane-slurm install`` makes)."""
    directory = str(tmp_path_factory.mktemp("slurm-bin"))
    proc = subprocess.run([cli("crane-slurm"), "install", directory], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return directory


def shell(cluster, slurm_bin: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a bash script (after :data:`WAIT_DONE`) with the wrappers first on PATH, in the cluster's work dir."""
    env = cluster.lc.env()
    env["PATH"] = f"{slurm_bin}:{os.path.dirname(cli('crun'))}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(["bash", "-c", WAIT_DONE + textwrap.dedent(script)], env=env, capture_output=True, text=True,
                          cwd=cluster.workdir, timeout=timeout)


def test_install_puts_only_the_links_it_is_asked_for(slurm_bin):
    names = sorted(os.listdir(slurm_bin))
    assert names == sorted(["sbatch", "squeue", "scancel", "sinfo", "scontrol", "sacct", "srun", "salloc"])
    assert all(os.path.realpath(os.path.join(slurm_bin, n)) == os.path.realpath(cli("crane-slurm")) for n in names)
    # installing the package put no sbatch beside crane-slurm
    assert not os.path.exists(os.path.join(os.path.dirname(cli("crane-slurm")), "sbatch"))


def test_a_typical_pipeline_script_runs_unchanged(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        set -e
        cat > pipe.sh <<'EOF'
        #!/bin/bash
        #SBATCH --job-name=pipe
        #SBATCH --ntasks=1
        echo "hello $1 from $SLURM_JOB_ID"
        EOF
        jid=$(sbatch --parsable pipe.sh world)
        echo "JID=$jid"
        echo "ST=$(wait_done $jid)"
        echo "ACCT=$(sacct -j $jid -n -P -o State,ExitCode | head -1)"
        sacct -j $jid -n -P -o JobID,State,ExitCode | sed 's/^/STEP=/'
        echo "NAME=$(sacct -j $jid -n -P -X --format=JobName)"
        cat slurm-$jid.out
        sinfo -h -o "%P %D"
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    jid = out[0].removeprefix("JID=")
    assert jid.isdigit()
    assert "ST=COMPLETED" in out
    assert "ACCT=COMPLETED|0:0" in out  # the job's line comes first, then its steps
    assert [line for line in out if line.startswith("STEP=")] == [f"STEP={jid}|COMPLETED|0:0",
                                                                   f"STEP={jid}.batch|COMPLETED|0:0"]
    assert "NAME=pipe" in out
    assert f"hello world from {jid}" in out
    assert out[-1] == "debug* 3"  # %P marks the default partition, as Slurm does


def test_submitted_batch_job_line_and_failed_job_exit_code(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        line=$(sbatch --wrap 'exit 3')
        echo "LINE=$line"
        jid=${line##* }
        wait_done $jid >/dev/null
        squeue -h -j $jid -o "%i %t"
        sacct -j $jid -X -o JobID,State,ExitCode
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("LINE=Submitted batch job ")
    jid = lines[0].split()[-1]
    assert lines[1] == f"{jid} F"
    assert lines[2] == "       JobID      State ExitCode "
    assert lines[3] == "------------ ---------- -------- "
    assert lines[4] == f"{jid:<12}     FAILED      3:0 "


def test_scancel_ends_a_running_job(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        jid=$(sbatch --parsable -J sleeper --wrap 'sleep 60')
        for _ in $(seq 1 300); do [ "$(squeue -h -j $jid -o %t)" = R ] && break; sleep 0.1; done
        squeue -h -u "$(id -un)" -t R -o "%i %j %T"
        scancel $jid; echo "RC=$?"
        echo "ST=$(wait_done $jid)"
        sacct -j $jid -n -P -X -o State
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.endswith(" sleeper RUNNING") for line in lines[:-3])
    assert lines[-3:] == ["RC=0", "ST=CANCELLED", "CANCELLED"]


def test_hold_release_and_scontrol_show_job(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        jid=$(sbatch --parsable -H -J held --wrap true)
        sleep 1
        squeue -h -j $jid -o "%t %R"
        scontrol release $jid; echo "RC=$?"
        echo "ST=$(wait_done $jid)"
        scontrol show job $jid
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "PD (JobHeldUser)"
    assert lines[1:3] == ["RC=0", "ST=COMPLETED"]
    block = "\n".join(lines[3:])
    assert lines[3].startswith("JobId=") and lines[3].endswith(" JobName=held")
    assert "   JobState=COMPLETED Reason=None Dependency=(null)" in block
    assert "ExitCode=0:0" in block and "Partition=debug" in block


def test_script_from_standard_input_is_named_sbatch(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        jid=$(printf '#!/bin/bash\\necho from-stdin\\n' | sbatch --parsable)
        wait_done $jid >/dev/null
        sacct -j $jid -n -P -X -o JobName,State
        cat slurm-$jid.out
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["sbatch|COMPLETED", "from-stdin"]


def test_errors_are_one_line_with_slurms_exit_codes(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        sbatch --constraint=gpu --wrap true; echo "RC=$?"
        sbatch -p nosuchpartition --wrap true; echo "RC=$?"
        squeue -j 999999; echo "RC=$?"
        scontrol show job 999999; echo "RC=$?"
    """)
    out = proc.stdout.splitlines()
    err = proc.stderr.splitlines()
    assert out == ["RC=2", "RC=1", "RC=1", "RC=1"]
    assert err[0] == "sbatch: error: --constraint is not supported by this cluster (nodes have no features)" \
        or err[0].startswith("sbatch: error: -C/--constraint is not supported")
    assert err[1].startswith("sbatch: error: Batch job submission failed: ")
    assert err[2:] == ["slurm_load_jobs error: Invalid job id specified"] * 2
    assert "Traceback" not in proc.stderr


def test_srun_runs_a_command_through_crun(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, "srun -N 2 --label -u bash -c 'echo task-$SLURM_PROCID' | sort")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["srun: warning: -u/--unbuffered is ignored (output is always relayed as it "
                                        "arrives)"]  # and nothing else: Slurm's srun prints only the tasks' output
    assert proc.stdout.splitlines() == ["0: task-0", "1: task-1"]  # --label, and each task's SLURM_PROCID


def test_another_user_cannot_scancel_your_job(cluster, slurm_bin):
    intruder = ensure_user("slurmwrapintruder")
    proc = shell(cluster, slurm_bin, "sbatch --parsable --wrap 'sleep 30'")
    jid = proc.stdout.strip()
    assert jid.isdigit(), proc.stderr
    try:
        token = cluster.lc.token(intruder.pw_name, intruder.pw_uid)  # her own valid credential, not root's
        attack = run_as(cluster, intruder, "crane-slurm", "scancel", jid, token=token)
        assert attack.returncode == 1
        assert attack.stderr.startswith("scancel: error: ")
        state = shell(cluster, slurm_bin, f"squeue -h -j {jid} -o %T").stdout.strip()
        assert state in ("PENDING", "RUNNING", "CONFIGURING")
    finally:
        shell(cluster, slurm_bin, f"scancel {jid}")


def test_sbatch_wait_exits_with_the_jobs_exit_code(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        sbatch --wait -o wait-%j.out --wrap 'echo waited; exit 7'; echo "RC=$?"
        sbatch -W -Q --wrap true; echo "RC=$?"
    """)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Submitted batch job ") and lines[1:] == ["RC=7", "RC=0"], proc.stderr
    assert cluster.output(f"wait-{lines[0].split()[-1]}.out") == "waited\n"


def test_scontrol_update_and_squeue_default_columns(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        jid=$(sbatch --parsable -H -J upd -t 10 --wrap true)
        scontrol update JobId=$jid TimeLimit=1:30:00; echo "RC=$?"
        squeue -j $jid -o "%.6i %.10l %t"
        squeue -j $jid
        scontrol -o show job $jid | tr ' ' '\\n' | grep -E '^(TimeLimit|JobState)='
        scancel $jid
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "RC=0", proc.stderr
    jid = lines[2].split()[0]
    assert lines[1:3] == [" JOBID TIME_LIMIT ST", f"{jid:>6}    1:30:00 PD"]
    assert lines[3] == "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
    assert lines[4].split() == [jid, "debug", "upd", "root", "PD", "0:00", "1", "(JobHeldUser)"]
    assert lines[5:] == ["JobState=PENDING", "TimeLimit=01:30:00"]


def test_scontrol_show_node_and_partition_and_sinfo_default(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        scontrol show partition debug | head -1
        scontrol show node cn01 | grep -E '^NodeName=|State='
        scontrol show node nosuch; echo "RC=$?"
        sinfo
        sinfo -N -h -o "%N %t"
    """)
    lines = proc.stdout.splitlines()
    assert lines[0] == "PartitionName=debug", proc.stderr
    assert lines[1] == "NodeName=cn01 Arch=x86_64 CoresPerSocket=1", proc.stdout + proc.stderr
    assert lines[2].startswith("   State=IDLE ") or lines[2].startswith("   State=MIXED ")
    assert lines[3] == "RC=1" and proc.stderr.strip().endswith("Node nosuch not found")
    assert lines[4] == "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST"
    assert all(line.startswith("debug*       up   infinite ") for line in lines[5:-3])
    assert [line.split()[0] for line in lines[-3:]] == ["cn01", "cn02", "cn03"]


def test_salloc_runs_srun_steps_inside_its_allocation(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        salloc -N 2 -Q bash -c 'echo "ALLOC=$CRANE_JOB_ID"; srun -N 2 hostname | sort | tr "\\n" " "; echo'
    """)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("ALLOC=") and out[0] != "ALLOC="
    assert len(out[1].split()) == 2


def test_srun_inside_a_batch_script_runs_a_step_of_the_job(cluster, slurm_bin):
    proc = shell(cluster, slurm_bin, """
        cat > steps.sh <<'EOF'
        #!/bin/bash
        #SBATCH -N 2
        srun -N 2 bash -c 'echo step-on-$(hostname)' | sort
        EOF
        jid=$(sbatch --parsable steps.sh)
        wait_done $jid
        cat slurm-$jid.out
        sacct -j $jid -n -P -o JobID,State
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    jid = lines[-1].split(".")[0]
    assert lines[0] == "COMPLETED"
    assert len([line for line in lines if line.startswith("step-on-")]) == 2
    assert f"{jid}|COMPLETED" in lines and f"{jid}.1|COMPLETED" in lines


def test_arrays_signals_suspend_and_requeue_through_the_wrappers(cluster, slurm_bin):
    """The forms the lifecycle work added pass through: --array with %A_%a, scancel -s, scontrol suspend/requeue."""
    proc = shell(cluster, slurm_bin, """
        aid=$(sbatch --parsable --array=1-3%2 -c 0.5 -o 'arr-%A_%a.out' --wrap 'echo task $SLURM_ARRAY_TASK_ID')
        for _ in $(seq 1 600); do [ -z "$(squeue -h -t PD,R -j $aid -o %i)" ] && break; sleep 0.1; done
        squeue -h -j $aid -o %i | sort
        cat arr-${aid}_1.out arr-${aid}_2.out arr-${aid}_3.out
        jid=$(sbatch --parsable -c 0.5 -o trap.out \
              --wrap 'trap "echo got-usr1" USR1; for i in $(seq 300); do sleep 0.1; done')
        for _ in $(seq 1 300); do [ "$(squeue -h -j $jid -o %t)" = R ] && break; sleep 0.1; done
        sleep 0.5
        scancel -s USR1 $jid; echo "SIG=$?"
        for _ in $(seq 1 50); do grep -q got-usr1 trap.out && break; sleep 0.1; done
        echo "TRAPPED=$(grep -c got-usr1 trap.out)"
        scontrol suspend $jid >/dev/null; echo "SUSP=$? $(squeue -h -j $jid -o %t)"
        scontrol resume $jid >/dev/null; echo "RES=$? $(squeue -h -j $jid -o %t)"
        scontrol requeue $jid >/dev/null; echo "REQ=$?"
        for _ in $(seq 1 300); do [ "$(squeue -h -j $jid -o %t)" = R ] && break; sleep 0.1; done
        scancel $jid
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [x.split("_")[1] for x in lines[:3]] == ["1", "2", "3"], lines  # the ended tasks, as squeue -j shows them
    assert lines[3:6] == ["task 1", "task 2", "task 3"]
    assert "SIG=0" in lines and "SUSP=0 S" in lines and "RES=0 R" in lines and "REQ=0" in lines, lines
    assert "TRAPPED=1" in lines
