"""The Slurm wrappers' argument translation: getopt_long parsing, our flags, refusals and warnings (no network)."""

from __future__ import annotations

import os

import pytest
from crane_cli.directives import WHEN_OR_WHETHER
from crane_cli.errors import CliError
from crane_slurm import interactive, sbatch, scancel, scontrol, squeue
from crane_slurm.main import COMMANDS, command, install
from crane_slurm.slurmopts import IGNORE, PASS, REFUSE, translate


def fields_for(argv: list[str], tmp_path, script: str | None = None, stdin: str | None = None,
               env: dict[str, str] | None = None) -> dict:
    if script is not None:
        path = tmp_path / "job.sh"
        path.write_text(script)
        argv = [a.replace("@SCRIPT@", str(path)) for a in argv]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return sbatch.job_fields(sbatch.parse(argv, env or {}), argv, lambda: stdin)
    finally:
        os.chdir(cwd)


def test_getopt_forms_long_short_bundled_prefix_and_equals():
    parsed = sbatch.parse(["-N2", "-n", "4", "--part=debug", "--job-name=x", "-Hc", "2", "job.sh", "-N", "9"])
    assert [(o.long, v) for o, v in parsed.options] == [
        ("nodes", "2"), ("ntasks", "4"), ("partition", "debug"), ("job-name", "x"), ("hold", None),
        ("cpus-per-task", "2")]
    assert parsed.positional == ["job.sh", "-N", "9"]  # after the script: its arguments


def test_ambiguous_and_unknown_options_are_one_line_usage_errors():
    with pytest.raises(CliError) as err:
        sbatch.parse(["--no", "x.sh"])
    assert err.value.code == 2 and err.value.message.startswith("sbatch: error: option '--no' is ambiguous")
    with pytest.raises(CliError) as err:
        sbatch.parse(["--frobnicate", "x.sh"])
    assert (err.value.code, err.value.message) == (2, "sbatch: error: unrecognized option '--frobnicate'")
    with pytest.raises(CliError) as err:
        sbatch.parse(["-N"])
    assert err.value.message == "sbatch: error: option requires an argument -- 'N'"


def test_sbatch_options_become_cbatchs(tmp_path):
    f = fields_for(["-N", "2", "--ntasks-per-node=2", "-c", "1", "-t", "1:00:00", "--mem=2G", "-p", "debug",
                    "-J", "name", "-A", "acct", "--qos=normal", "-o", "out-%j.txt", "-e", "err-%j.txt",
                    "--exclusive=user", "--export=NONE,A=1", "-H", "--comment=c", "@SCRIPT@"], tmp_path,
                   script="#!/bin/bash\necho hi\n")
    assert f["node_num"] == 2 and f["ntasks_per_node"] == 2 and f["cpus_per_task"] == 1.0
    assert f["time_limit"] == 3600 and f["mem_per_node"] == 2 << 30
    assert (f["partition"], f["name"], f["account"], f["qos"]) == ("debug", "name", "acct", "normal")
    assert (f["output"], f["error"]) == ("out-%j.txt", "err-%j.txt")
    assert f["exclusive"] is True and f["hold"] is True and f["comment"] == "c"
    assert f["env"]["A"] == "1"
    assert f["cmd_line"].startswith("sbatch -N 2 ")


def test_sbatch_reads_sbatch_directives_and_defaults_to_slurms_output_file(tmp_path):
    f = fields_for(["@SCRIPT@"], tmp_path, script="#!/bin/bash\n#SBATCH -J fromscript\n#SBATCH --time=5\necho\n")
    assert f["name"] == "fromscript" and f["time_limit"] == 300
    assert f["output"] == "slurm-%j.out"
    assert "#SBATCH" not in f["script"]


def test_sbatch_environment_variables_sit_between_directives_and_the_command_line(tmp_path):
    script = "#!/bin/bash\n#SBATCH -p fromscript\n#SBATCH -J fromscript\n#SBATCH -t 5\necho\n"
    f = fields_for(["-t", "7", "@SCRIPT@"], tmp_path, script=script,
                   env={"SBATCH_PARTITION": "fromenv", "SBATCH_TIMELIMIT": "6", "SBATCH_EXCLUSIVE": "1"})
    assert (f["partition"], f["name"], f["time_limit"], f["exclusive"]) == ("fromenv", "fromscript", 420, True)


def test_script_arguments_become_positional_parameters(tmp_path):
    f = fields_for(["@SCRIPT@", "a b", "it's"], tmp_path, script="#!/bin/bash\necho \"$1\"\n")
    assert f["script"].splitlines()[:2] == ["#!/bin/bash", "set -- 'a b' 'it'\"'\"'s'"]
    with pytest.raises(CliError) as err:
        fields_for(["@SCRIPT@", "x"], tmp_path, script="#!/usr/bin/python3\nprint(1)\n")
    assert err.value.code == 2 and "need a shell script" in err.value.message


def test_script_from_standard_input_is_named_sbatch(tmp_path):
    f = fields_for([], tmp_path, stdin="#!/bin/bash\n#SBATCH -t 10\necho piped\n")
    assert f["name"] == "sbatch" and f["time_limit"] == 600 and "echo piped" in f["script"]
    with pytest.raises(CliError) as err:
        fields_for([], tmp_path, stdin=None)
    assert err.value.code == 2 and "no batch script given" in err.value.message
    with pytest.raises(CliError) as err:
        fields_for([], tmp_path, stdin="")  # e.g. </dev/null
    assert (err.value.code, err.value.message) == (2, "sbatch: error: Batch script is empty!")


def test_heterogeneous_jobs_are_refused(tmp_path):
    with pytest.raises(CliError) as err:
        fields_for(["-N", "1", ":", "-N", "2", "@SCRIPT@"], tmp_path, script="#!/bin/bash\n")
    assert (err.value.code, err.value.message) == (
        2, "sbatch: error: heterogeneous jobs (':') are not supported by this cluster")


def test_wrap_and_a_script_together_is_an_error(tmp_path):
    with pytest.raises(CliError) as err:
        fields_for(["--wrap", "true", "@SCRIPT@"], tmp_path, script="#!/bin/bash\n")
    assert err.value.message == "sbatch: error: script arguments not permitted with --wrap option"


def test_a_node_range_gets_its_minimum_with_a_warning(tmp_path, capsys):
    assert fields_for(["-N", "2-4", "--wrap", "true"], tmp_path)["node_num"] == 2
    assert capsys.readouterr().err == ("sbatch: warning: -N/--nodes 2-4: a node range is not supported, "
                                       "the job gets 2 node(s)\n")
    assert interactive.translated("srun", ["--nodes=1-3", "true"]) == ["--nodes=1", "--quiet", "--", "true"]


def test_refused_option_names_itself_and_exits_2(tmp_path):
    with pytest.raises(CliError) as err:
        fields_for(["-C", "gpu", "--wrap", "true"], tmp_path)
    assert err.value.code == 2
    assert err.value.message == "sbatch: error: -C/--constraint is not supported by this cluster " \
                                "(nodes have no features)"


def test_harmless_option_is_one_warning(tmp_path, capsys):
    f = fields_for(["-s", "--oversubscribe", "--hint=compute_bound", "--wrap", "true"], tmp_path)
    assert f["script"].endswith("true\n")
    err = capsys.readouterr().err.splitlines()
    assert err == ["sbatch: warning: -s/--oversubscribe is ignored (nodes are shared unless --exclusive)",
                   "sbatch: warning: --hint is ignored"]


def test_bad_values_are_cbatchs_errors_reworded(tmp_path):
    with pytest.raises(CliError) as err:
        fields_for(["-N", "0", "--wrap", "true"], tmp_path)
    assert err.value.code == 2 and err.value.message.startswith("sbatch: error: ")
    assert "cbatch" not in err.value.message and "node count" in err.value.message


def test_lifecycle_flags_pass_through_to_cbatchs_own():
    parsed = sbatch.parse(["--array=1-3", "--dependency=afterok:5", "--signal=B:USR1@60", "--deadline=now+1hour",
                           "-L", "lic:1", "--reservation=r", "--begin=now", "job.sh"])
    assert sbatch.cbatch_argv(translate("sbatch", parsed), "job.sh") == [
        "--array=1-3", "--dependency=afterok:5", "--signal=B:USR1@60", "--deadline=now+1hour", "--licenses=lic:1",
        "--reservation=r", "--begin=now", "job.sh"]


def test_no_slurm_option_that_changes_when_or_whether_a_job_runs_is_ignored():
    """The #SBATCH rule of crane_cli.directives holds on sbatch's command line too: applied or refused."""
    for spelling in WHEN_OR_WHETHER:
        opt = sbatch.TABLE.by_long.get(spelling[2:]) if spelling.startswith("--") else \
            sbatch.TABLE.by_short.get(spelling[1:])
        if opt is None:
            continue  # not an sbatch option (srun's -I, ...)
        assert opt.action in (PASS, REFUSE, "local"), spelling


def test_srun_translation_keeps_the_command_and_its_flags():
    argv = interactive.translated("srun", ["-N2", "-n", "4", "--label", "-u", "--pty", "bash", "-c", "echo -N"])
    assert argv == ["--nodes=2", "--ntasks=4", "--label", "--pty", "--quiet", "--", "bash", "-c", "echo -N"]
    assert "--quiet" not in interactive.translated("srun", ["-v", "true"])
    assert "--quiet" not in interactive.translated("salloc", [])
    with pytest.raises(CliError) as err:
        interactive.translated("srun", ["-N", "1"])
    assert err.value.message == "srun: error: No command given to execute."
    with pytest.raises(CliError) as err:
        interactive.translated("salloc", ["--no-shell"])
    assert err.value.code == 2 and "--no-shell is not supported" in err.value.message


def test_every_pass_option_with_an_optional_value_drops_it_for_our_flag():
    for table in (*interactive.TABLES.values(), sbatch.TABLE):
        for opt in table.opts:
            if opt.action == PASS and opt.arg == "optional":
                assert opt.drop_value, opt.long


@pytest.fixture
def arrays_supported(monkeypatch):
    """As once our ccancel takes ``<array>_<task>`` ids (the translation itself is what is tested)."""
    from crane_slurm import support

    monkeypatch.setattr(support, "array_tasks", lambda: True)
    monkeypatch.setattr(support, "cancel_signal", lambda: True)


def test_pass_through_fields_are_refused_while_our_cli_lacks_them():
    """A controller that ignored ``signal`` would cancel the job: refused unless ccancel has -s."""
    from crane_slurm import support

    for argv, supported in ((["-s", "USR1", "5"], support.cancel_signal()), (["7_3"], support.array_tasks())):
        if supported:
            assert scancel.build_request(scancel.TABLE.parse(argv, False))
        else:
            with pytest.raises(CliError) as err:
                scancel.build_request(scancel.TABLE.parse(argv, False))
            assert err.value.code == 2 and "not supported by this cluster yet" in err.value.message
    if not support.array_tasks():
        for call in (lambda: squeue.build_request(squeue.TABLE.parse(["-j", "7_2"], False)),
                     lambda: scontrol.parse_job_list(["7_2"])):
            with pytest.raises(CliError) as err:
                call()
            assert err.value.code == 2


def test_squeue_request_defaults_and_job_ids(arrays_supported):
    fields, asked = squeue.build_request(squeue.TABLE.parse([], False))
    assert not asked and fields["states"] == [0, 1, 7, 8, 9, 10] and not fields["include_finished"]
    fields, asked = squeue.build_request(squeue.TABLE.parse(["-j", "5,7_2", "-u", "0", "-p", "a,b"], False))
    assert asked and fields["job_ids"] == [5] and fields["array_tasks"] == [(7, 2)]
    assert fields["users"] == ["root"] and fields["partitions"] == ["a", "b"]
    assert fields["include_finished"] and set(fields["states"]) >= {2, 3, 4, 5, 6}
    fields, _ = squeue.build_request(squeue.TABLE.parse(["-t", "PD,r", "-j", "5"], False))
    assert fields["states"] == [0, 1]
    with pytest.raises(CliError) as err:
        squeue.build_request(squeue.TABLE.parse(["-t", "BOGUS"], False))
    assert err.value.code == 2 and err.value.message.startswith("squeue: error: Invalid job state specified: BOGUS")


def test_scancel_ids_filters_and_signals(arrays_supported):
    fields = scancel.build_request(scancel.TABLE.parse(["5", "6.1", "7_3", "-s", "USR1"], False))
    assert fields["job_ids"] == [5] and fields["steps"] == [(6, 1)] and fields["array_tasks"] == [(7, 3)]
    import signal

    assert fields["signal"] == signal.SIGUSR1
    fields = scancel.build_request(scancel.TABLE.parse(["-u", "root", "-t", "PENDING"], False))
    assert fields["user"] == "root" and fields["states"] == [0]
    with pytest.raises(CliError) as err:
        scancel.build_request(scancel.TABLE.parse([], False))
    assert (err.value.code, err.value.message) == (2, "scancel: error: No job identification provided")
    with pytest.raises(CliError):
        scancel.build_request(scancel.TABLE.parse(["--signal=NOPE", "5"], False))


def test_scontrol_update_job_keys():
    ids, tasks, changes = scontrol.job_changes(["JobId=4", "TimeLimit=10", "Partition=p", "Name=n"])
    assert ids == [4] and tasks == []
    assert changes == [("time_limit", 600), ("partition", "p"), ("name", "n")]
    with pytest.raises(CliError) as err:
        scontrol.job_changes(["JobId=4", "Shared=yes"])
    assert err.value.code == 2 and "Update of Shared is not supported" in err.value.message


def test_install_creates_links_and_refuses_to_clobber(tmp_path, capsys):
    target = tmp_path / "crane-slurm"
    target.write_text("#!/bin/sh\n")
    bindir = tmp_path / "bin"
    assert install([str(bindir)], target=str(target)) == 0
    assert sorted(os.listdir(bindir)) == sorted(COMMANDS)
    assert all(os.readlink(bindir / n) == str(target) for n in COMMANDS)
    assert install([str(bindir)], target=str(target)) == 0  # again: nothing to do
    (bindir / "sinfo").unlink()
    (bindir / "sinfo").write_text("a site's own sinfo")
    with pytest.raises(CliError) as err:
        install([str(bindir)], target=str(target))
    assert err.value.code == 2 and "exists (use --force" in err.value.message
    assert install(["--force", str(bindir)], target=str(target)) == 0
    assert os.readlink(bindir / "sinfo") == str(target)


def test_dispatch_by_link_name_and_unknown_command():
    with pytest.raises(CliError) as err:
        command(["-C", "x"], argv0="/opt/slurm-compat/sbatch")  # argv[0] chose sbatch: its option table
    assert err.value.message.startswith("sbatch: error: -C/--constraint is not supported")
    with pytest.raises(CliError) as err:
        command(["sqeueu"], argv0="crane-slurm")
    assert err.value.code == 2 and "unknown command 'sqeueu'" in err.value.message


def test_option_tables_have_no_duplicate_spellings():
    from crane_slurm import sacct, sinfo

    for table in (sbatch.TABLE, squeue.TABLE, scancel.TABLE, sinfo.TABLE, scontrol.TABLE, sacct.TABLE,
                  *interactive.TABLES.values()):
        longs = [o.long for o in table.opts]
        shorts = [o.short for o in table.opts if o.short]
        assert len(longs) == len(set(longs)), table.prog
        assert len(shorts) == len(set(shorts)), table.prog
        assert all(o.action in (PASS, REFUSE, IGNORE, "local") for o in table.opts)


def test_array_task_ids_reach_the_requests_as_task_refs(arrays_supported):
    from crane_common.proto import crane_pb2 as pb
    from crane_slurm import sacct
    from crane_slurm.support import job_query

    fields, _ = squeue.build_request(squeue.TABLE.parse(["-j", "7_2,8"], False))
    request = job_query(pb, fields)
    assert [(t.array_job_id, t.task_id) for t in request.array_tasks] == [(7, 2)] and list(request.job_ids) == [8]
    fields, _wanted, window = sacct.build_request(sacct.TABLE.parse(["-j", "7_2.batch,9"], False))
    request = job_query(pb, fields)
    assert [(t.array_job_id, t.task_id) for t in request.array_tasks] == [(7, 2)] and list(request.job_ids) == [9]
    assert window == (None, None) and request.include_history
