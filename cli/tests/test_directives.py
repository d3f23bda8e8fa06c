"""#CBATCH / #SBATCH / #BSUB directives and script checks."""

import pytest

from crane_cli.directives import bsub_time, check_script_bytes, parse_bool, parse_script
from crane_cli.errors import CliError


def opts(text):
    return parse_script(text).options()


def test_cbatch_forms_and_removal():
    text = "#!/bin/bash -l\n#CBATCH -N 2\n#CBATCH --time=1:00:00\necho hi\n#CBATCH -J late\n#CBATCH --exclusive\n"
    parsed = parse_script(text)
    assert parsed.options() == {"nodes": "2", "time": "1:00:00", "job_name": "late", "exclusive": True}
    assert parsed.script == "#!/bin/bash -l\necho hi\n"
    assert parsed.interpreter == "/bin/bash -l"
    assert parsed.warnings == []


def test_no_shebang_no_interpreter():
    assert parse_script("echo hi\n").interpreter is None
    assert parse_script("echo\n#!/bin/zsh\n").interpreter is None


def test_short_attached_values():
    assert opts("#CBATCH -N2\n#CBATCH -c=4\n") == {"nodes": "2", "cpus_per_task": "4"}


def test_qos_is_capital_q_in_scripts_and_chdir_has_no_short_form():
    assert opts("#CBATCH -Q high\n") == {"qos": "high"}
    with pytest.raises(CliError, match="unrecognized '-q' in script"):
        parse_script("#CBATCH -q high\n")
    with pytest.raises(CliError, match="unrecognized '-D' in script"):
        parse_script("#CBATCH -D /tmp\n")
    assert opts("#CBATCH --chdir /tmp\n") == {"chdir": "/tmp"}


@pytest.mark.parametrize("line", ["#CBATCH", "#CBATCH -J my job", "#CBATCH -N 2 # two nodes", "#CBATCH a b c d"])
def test_fields_out_of_bound(line):
    with pytest.raises(CliError, match="fields out of bound") as exc:
        parse_script(f"{line}\necho\n")
    assert exc.value.code == 2


def test_unrecognized():
    with pytest.raises(CliError, match=r"^unrecognized '--bogus' in script$") as exc:
        parse_script("#CBATCH --bogus 1\n")
    assert exc.value.code == 2


def test_unsupported_known_options_are_errors():
    assert parse_script("#CBATCH -a 1-10\n").options() == {"array": "1-10"}
    with pytest.raises(CliError, match="not supported"):
        parse_script("#CBATCH --wckey=w\n")
    assert parse_script("#CBATCH --dependency=afterok:1\n").options() == {"dependency": "afterok:1"}
    assert parse_script("#SBATCH -L matlab:2|ansys\n#SBATCH --reservation=maint\n").options() == {
        "licenses": "matlab:2|ansys", "reservation": "maint"}


def test_value_required():
    with pytest.raises(CliError, match="needs a value"):
        parse_script("#CBATCH -N\n")


def test_bool_directives():
    assert opts("#CBATCH --exclusive=false\n") == {"exclusive": False}
    assert opts("#CBATCH --get-user-env\n") == {"get_user_env": True}
    assert opts("#CBATCH --get-user-env=T\n") == {"get_user_env": True}
    assert opts("#CBATCH --requeue\n") == {"requeue": True}
    with pytest.raises(CliError, match="expected true or false"):
        parse_script("#CBATCH --exclusive=maybe\n")


def test_later_directive_wins():
    assert opts("#CBATCH -N 1\n#CBATCH --nodes=3\n") == {"nodes": "3"}


def test_prefix_must_be_a_whole_word():
    parsed = parse_script("#CBATCHES are fun\n #CBATCH -N 2\necho\n")
    assert parsed.options() == {}
    assert parsed.script == "#CBATCHES are fun\n #CBATCH -N 2\necho\n"


def test_sbatch_whitelist():
    parsed = parse_script("#SBATCH -N 2\n#SBATCH --qos=high\n#SBATCH -c 4\n#SBATCH --nodelist cn[1-2]\n")
    assert parsed.options() == {"nodes": "2", "qos": "high", "cpus_per_task": "4", "nodelist": "cn[1-2]"}
    assert parsed.script == ""


def test_sbatch_takes_every_cbatch_spelling_with_a_space_or_an_equals_sign():
    # upstream accepts only a whitelist and drops the rest; scripts written for Slurm then run wrong
    parsed = parse_script("#SBATCH --mem-per-cpu 100\n#SBATCH --ntasks=3\n#SBATCH -x cn1\necho\n")
    assert parsed.options() == {"mem_per_cpu": "100", "ntasks": "3", "exclude": "cn1"}
    assert parsed.warnings == [] and parsed.script == "echo\n"


def test_an_unknown_sbatch_option_warns_once_and_a_timing_one_fails():
    parsed = parse_script("#SBATCH --constraint=haswell\n#SBATCH --requeue-exit 3\necho\n")
    assert [w.split("'")[1] for w in parsed.warnings] == ["#SBATCH --constraint", "#SBATCH --requeue-exit"]
    with pytest.raises(CliError, match="changes when or whether the job runs") as exc:
        parse_script("#SBATCH --time-min=10\n")
    assert exc.value.code == 2
    assert parse_script("#SBATCH --hold\n").options() == {"hold": True}   # applied, never dropped


def test_sbatch_array_is_applied():
    assert parse_script("#SBATCH --array=1-4%2\n").options() == {"array": "1-4%2"}
    assert parse_script("#SBATCH -a 0-9\n").options() == {"array": "0-9"}


def test_bsub_mapping():
    text = ("#BSUB -J name\n#BSUB -nnode 2\n#BSUB -n 4\n#BSUB -W 1:30\n#BSUB -M 2G\n#BSUB -cwd /tmp\n"
            "#BSUB -q CPU\n#BSUB -env all\n#BSUB -o out\n#BSUB -e err\n")
    assert opts(text) == {"job_name": "name", "nodes": "2", "ntasks_per_node": "4", "time": "1:30:00", "mem": "2G",
                          "chdir": "/tmp", "partition": "CPU", "export": "all", "output": "out", "error": "err"}


def test_bsub_minutes_and_unknown():
    assert opts("#BSUB -W 45\n") == {"time": "45"}
    assert parse_script("#BSUB -R span[hosts=1]\n").warnings
    with pytest.raises(CliError):
        parse_script("#BSUB -x\n")
    with pytest.raises(CliError):
        parse_script("#BSUB -W 1:2:3\n")


def test_bsub_time():
    assert bsub_time("2:05") == "2:05:00"
    assert bsub_time("90") == "90"
    with pytest.raises(ValueError):
        bsub_time("a")


def test_parse_bool():
    assert parse_bool("TRUE") is True and parse_bool("0") is False
    with pytest.raises(ValueError):
        parse_bool("yes")


def test_check_script_bytes():
    assert check_script_bytes(b"#!/bin/sh\necho \xc3\xa9\n", "s") == "#!/bin/sh\necho \u00e9\n"
    for data, what in ((b"", "empty"), (b"  \n\n", "empty"), (b"\x7fELF\x00\x01", "NUL"), (b"echo \xff\n", "UTF-8")):
        with pytest.raises(CliError, match=what) as exc:
            check_script_bytes(data, "s")
        assert exc.value.code == 2
