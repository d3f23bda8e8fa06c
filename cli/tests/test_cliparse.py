"""The click layer: one definition of each flag for the command line, script directives and --help."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click
import pytest
from cli_support import script_path

from crane_cli import cbatch, ccancel, cqueue
from crane_cli.cliparse import Command, Option, parse
from crane_cli.directives import OptionTable, option_table, parse_script
from crane_cli.errors import CliError

HELP = Path(__file__).parent / "help"

# --help as the argparse front end printed it (COLUMNS=80), kept byte for byte (cacct, ceff: as first written).
HELP_CASES = [("cbatch",), ("cqueue",), ("cacct",), ("ceff",), ("cinfo",), ("ccancel",), ("ccontrol",), ("cacctmgr",),
              ("crane", "version"), ("crane", "whoami"), ("crane", "token"), ("crane", "token", "issue"),
              ("crane", "token", "show"), ("crane",), ("ccon",), ("ccon", "run"), ("crun",), ("calloc",)]


@pytest.mark.parametrize("words", HELP_CASES, ids=["_".join(w) for w in HELP_CASES])
def test_help_is_unchanged(words):
    if words == ("crane",):
        from crane_cli.crane import installed_commands

        if sorted(installed_commands()) != ["bench", "certs", "demo", "sim", "token"]:
            pytest.skip("the crane help lists the installed verbs; this environment has others")
    env = dict(os.environ, COLUMNS="80")
    r = subprocess.run([script_path(words[0]), *words[1:], "--help"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (HELP / ("_".join(words) + ".txt")).read_text()


def test_version_flag():
    r = subprocess.run([script_path("cqueue"), "-v"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "cqueue (crane-cli) 0.1.0\n")


# -- parsing rules kept from argparse ------------------------------------------------------------

def err(command: Command, argv: list[str]) -> str:
    with pytest.raises(CliError) as exc:
        parse(command, argv)
    assert exc.value.code == 2
    assert "\n" not in exc.value.message
    return exc.value.message


def test_a_value_option_does_not_swallow_a_flag():
    c = cbatch.build_command()
    assert err(c, ["-J", "--exclusive", "x.sh"]) == "cbatch: argument -J/--job-name: expected one argument"
    assert err(c, ["-HJ", "-x", "x.sh"]) == "cbatch: argument -J/--job-name: expected one argument"
    assert err(c, ["-N"]) == "cbatch: argument -N/--nodes: expected one argument"
    assert parse(c, ["-N", "-1"]).nodes == "-1"  # a negative number is a value (jobspec rejects it)
    assert parse(c, ["--wrap", "-x y"]).wrap == "-x y"  # so is a value with a space
    assert parse(c, ["--wrap=-x"]).wrap == "-x"
    assert parse(c, ["-J-x"]).job_name == "-x"
    assert parse(c, ["--", "-script.sh"]).script == "-script.sh"


def test_errors_name_the_flags():
    c = cbatch.build_command()
    assert err(c, ["--bogus"]) == "cbatch: unrecognized arguments: --bogus"
    assert err(c, ["a", "b"]) == "cbatch: unrecognized arguments: b"
    assert err(c, ["--mem", "1G", "--mem-per-cpu", "1G"]) == \
        "cbatch: argument --mem-per-cpu: not allowed with argument --mem"
    assert err(c, ["--mem-per-cpu=1G", "--mem", "1G"]) == \
        "cbatch: argument --mem: not allowed with argument --mem-per-cpu"
    assert err(c, ["--exclusive=1"]) == "cbatch: argument --exclusive: takes no value"
    assert err(cqueue.build_command(), ["--self", "-u", "x"]) == \
        "cqueue: argument -u/--user: not allowed with argument --self"


def test_unsupported_upstream_options_are_errors_not_ignored():
    c = cbatch.build_command()
    assert err(c, ["-a", "1-4", "--wrap", "x"]) == "cbatch: -a/--array is not supported by this cluster"
    assert err(c, ["--wckey", "w", "--wrap", "x"]) == "cbatch: --wckey is not supported by this cluster"
    with pytest.raises(CliError, match="not supported by this cluster"):
        parse_script("#CBATCH --array 1-4\n")


def test_values():
    args = parse(cqueue.build_command(), ["-j", "1,2", "-j", "3", "-NF"])
    assert args.job == ["1,2", "3"] and args.name is None  # repeated options: a list, or None
    assert args.noheader is True and args.full is True and args.start is False
    args = parse(cbatch.build_command(), ["--wrap", "x", "--exclusive"])
    assert args.exclusive is True and args.hold is None and args.repeat == "1" and args.config is None
    assert parse(ccancel.build_command(), ["1", "2,3", "-w", "cn1"]).ids == ("1", "2,3")


# -- script directives come from the same definitions ---------------------------------------------

# What upstream cbatch accepts after #CBATCH (dest, kind) and #SBATCH; the tables are derived
# from the click options and must stay exactly this.
UPSTREAM_CBATCH = {
    "-N": "nodes", "--nodes": "nodes", "-c": "cpus_per_task", "--cpus-per-task": "cpus_per_task", "--gres": "gres",
    "--gpus-per-node": "gpus_per_node", "--ntasks-per-node": "ntasks_per_node", "-n": "ntasks", "--ntasks": "ntasks",
    "-t": "time", "--time": "time", "-b": "begin", "--begin": "begin", "--mem": "mem", "--mem-per-cpu": "mem_per_cpu",
    "-p": "partition", "--partition": "partition", "-J": "job_name", "--job-name": "job_name", "-A": "account",
    "--account": "account", "-Q": "qos", "--qos": "qos", "--chdir": "chdir", "-x": "exclude", "--exclude": "exclude",
    "-w": "nodelist", "--nodelist": "nodelist", "--get-user-env": "get_user_env", "--export": "export",
    "-i": "input", "--input": "input", "-o": "output", "--output": "output", "-e": "error", "--error": "error",
    "--interpreter": "interpreter", "--extra-attr": "extra_attr", "--mail-type": "mail_type",
    "--mail-user": "mail_user", "--comment": "comment", "--open-mode": "open_mode", "--exclusive": "exclusive",
    "--requeue": "requeue", "--no-requeue": "no_requeue",
    "--pod": "pod", "--pod-name": "pod_name", "--pod-port": "pod_port", "--pod-user": "pod_user",
    "--pod-userns": "pod_userns", "--pod-host-network": "pod_host_network", "--pod-dns": "pod_dns",
}
POD_FLAGS = set("--pod --pod-name --pod-port --pod-user --pod-userns --pod-host-network --pod-dns".split())
UPSTREAM_UNSUPPORTED = set("-a --array -L --licenses -r --reservation --wckey".split())
DEPENDENCY = {"-d": "dependency", "--dependency": "dependency"}  # upstream's, supported here
SIGNAL = {"-s": "signal", "--signal": "signal"}  # upstream's, supported here (docs/lifecycle.md)
UPSTREAM_SBATCH = set("-c -J -N --qos -A -e --exclude --chdir --export --mem -p -i -o --nodelist -w --get-user-env -t "
                      "--ntasks-per-node -n --mail-type --mail-user --comment --open-mode -r --wrap --gres --exclusive "
                      "-b --begin --deadline -a --array".split())


def test_directive_tables_are_the_click_options():
    table = option_table()
    supported = {k: v[0] for k, v in table.cbatch.items() if v[1] != "unsupported"}
    assert supported == {**UPSTREAM_CBATCH, **DEPENDENCY, **SIGNAL}
    assert {k for k, v in table.cbatch.items() if v[1] == "unsupported"} == UPSTREAM_UNSUPPORTED
    assert table.sbatch == UPSTREAM_SBATCH | POD_FLAGS | set(DEPENDENCY) | set(SIGNAL)  # upstream's, plus ours
    flags = {k for k, v in table.cbatch.items() if v[1] == "bool"}
    assert flags == {"--get-user-env", "--exclusive", "--requeue", "--no-requeue", "--pod-userns",
                     "--pod-host-network"}
    params = {p.name: p for p in cbatch.build_command().params}
    assert all(table.cbatch[k][0] in params for k in UPSTREAM_CBATCH)


def test_a_new_option_is_a_directive_too():
    cmd = Command("x", params=[Option("--colour", help="c", sbatch=True),
                               Option("--size", type=click.IntRange(1, 9), help="s"),
                               Option("--cli-only", script=())])
    table = OptionTable(cmd)
    parsed = parse_script("#CBATCH --colour=red\n#SBATCH --colour blue\n#CBATCH --size 3\necho\n", table)
    assert parsed.options() == {"colour": "blue", "size": 3}  # converted by the option's click type
    with pytest.raises(CliError, match="invalid value '12' for '--size' in script line 1"):
        parse_script("#CBATCH --size 12\n", table)
    with pytest.raises(CliError, match="unrecognized '--cli-only' in script"):
        parse_script("#CBATCH --cli-only 1\n", table)
    assert parse(cmd, ["--size", "4"]).size == 4
