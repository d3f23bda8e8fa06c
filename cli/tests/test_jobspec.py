"""From merged options to JobSpec fields."""

import pytest

from crane_cli.errors import CliError
from crane_cli.jobspec import build_env, build_fields, merge_options, parse_gpus_per_node, parse_gres

ENV = {"PATH": "/bin", "HOME": "/home/a", "CRANE_X": "1", "FOO": "foo"}


def build(opts, **kw):
    args = {"script": "echo\n", "default_name": "job.sh", "interpreter": None, "environ": ENV, "cwd": "/work",
            "submit_host": "login1", "cmd_line": "cbatch job.sh"}
    args.update(kw)
    return build_fields(opts, **args)


def test_defaults():
    f = build({})
    assert f["name"] == "job.sh"
    assert f["cwd"] == "/work" and f["submit_dir"] == "/work"
    assert f["interpreter"] == "/bin/bash"
    assert f["env"] == ENV and f["export"] == "ALL"
    assert f["submit_host"] == "login1" and f["cmd_line"] == "cbatch job.sh"
    assert "node_num" not in f and "time_limit" not in f


def test_full_conversion():
    f = build({"nodes": "2", "ntasks": "4", "ntasks_per_node": "2", "cpus_per_task": "1.5", "mem": "2G",
               "time": "1-00:00:00", "partition": "CPU", "job_name": "x", "account": "acct", "qos": "q",
               "chdir": "sub", "output": "o-%j", "error": "e-%j", "input": "in", "nodelist": "cn[01-03]",
               "exclude": "cn05", "exclusive": True, "hold": True, "get_user_env": True, "comment": "hello",
               "open_mode": "Append", "interpreter": "/usr/bin/python3", "requeue": True, "gres": "gpu:a100:2"},
              interpreter="/bin/sh")
    assert f["node_num"] == 2 and f["ntasks"] == 4 and f["ntasks_per_node"] == 2 and f["cpus_per_task"] == 1.5
    assert f["mem_per_node"] == 2 << 30 and f["time_limit"] == 86400
    assert f["cwd"] == "/work/sub"
    assert f["nodelist"] == ["cn01", "cn02", "cn03"] and f["exclude"] == ["cn05"]
    assert f["interpreter"] == "/usr/bin/python3"
    assert f["open_mode"] == "append"
    assert f["gres"] == {"gpu:a100": 2}
    assert f["exclusive"] and f["hold"] and f["get_user_env"] and f["requeue"]
    assert f["comment"] == "hello" and f["extra_attr"] == '{"comment":"hello"}'


def test_shebang_interpreter_used_when_not_overridden():
    assert build({}, interpreter="/bin/zsh")["interpreter"] == "/bin/zsh"


def test_absolute_chdir():
    assert build({"chdir": "/scratch"})["cwd"] == "/scratch"


@pytest.mark.parametrize("opts,msg", [
    ({"nodes": "0"}, "greater than 0"), ({"nodes": "x"}, "positive integer"), ({"nodes": "-1"}, "greater than 0"),
    ({"cpus_per_task": "0"}, "greater than 0"), ({"cpus_per_task": "nan"}, "greater than 0"),
    ({"mem": "2P"}, "--mem"), ({"mem": "0"}, "greater than 0"), ({"mem": "1G", "mem_per_cpu": "1G"}, "exclusive"),
    ({"time": "1:99"}, "--time"), ({"time": "0"}, "greater than 0"), ({"begin": "someday"}, "--begin"),
    ({"nodelist": "cn[1-"}, "nodelist"), ({"open_mode": "overwrite"}, "open-mode"),
    ({"gres": "gpu:a:b:c"}, "--gres"), ({"gres": "gpu:1", "gpus_per_node": "1"}, "gpus-per-node"),
    ({"requeue": True, "no_requeue": True}, "exclusive"), ({"export": "ALL,1BAD=x"}, "variable name"),
    ({"extra_attr": "{bad"}, "JSON"), ({"extra_attr": "[1]"}, "object"), ({"mail_type": "SOMETIMES"}, "mail-type"),
])
def test_errors(opts, msg):
    with pytest.raises(CliError, match=msg) as exc:
        build(opts)
    assert exc.value.code == 2


def test_gres_parsing():
    assert parse_gres("gpu:a100:2") == {"gpu:a100": 2}
    assert parse_gres("gpu:2") == {"gpu": 2}
    assert parse_gres("gpu") == {"gpu": 1}
    assert parse_gres("gpu:a100") == {"gpu:a100": 1}
    assert parse_gres("gpu:2,nic:1") == {"gpu": 2, "nic": 1}
    for bad in ("", "gpu:0", "gpu::2", "a:b:c:1"):
        with pytest.raises(ValueError):
            parse_gres(bad)


def test_gpus_per_node():
    assert parse_gpus_per_node("2") == {"gpu": 2}
    assert parse_gpus_per_node("a100:2,v100:1") == {"gpu:a100": 2, "gpu:v100": 1}
    for bad in ("", "0", "a100", ":2", "a:b:2"):
        with pytest.raises(ValueError):
            parse_gpus_per_node(bad)
    f = build({"gpus_per_node": "a100:2", "gres": "nic:1"})
    assert f["gres"] == {"nic": 1, "gpu:a100": 2}


def test_export_forms():
    assert build_env("ALL", ENV) == ENV
    assert build_env("all", ENV) == ENV
    assert build_env("NONE", ENV) == {"CRANE_X": "1"}
    assert build_env("NIL", ENV) == {}
    assert build_env("ALL,A=a,FOO", ENV) == {**ENV, "A": "a"}
    assert build_env("NONE,A=a,FOO,MISSING", ENV) == {"CRANE_X": "1", "A": "a", "FOO": "foo"}
    assert build_env("A=a=b,FOO", ENV) == {"CRANE_X": "1", "A": "a=b", "FOO": "foo"}
    with pytest.raises(ValueError):
        build_env("A=1,ALL", ENV)


def test_token_is_not_exported_unless_named():
    env = {**ENV, "CRANE_TOKEN": "secret"}
    assert "CRANE_TOKEN" not in build_env("ALL", env)
    assert "CRANE_TOKEN" not in build_env("NONE", env)
    assert build_env("ALL,CRANE_TOKEN", env)["CRANE_TOKEN"] == "secret"


def test_mail_fields():
    f = build({"mail_type": "end,fail", "mail_user": "a@b.org"})
    assert f["mail_type"] == ["END", "FAIL"] and f["mail_user"] == "a@b.org"
    f = build({"mail_type": "TimeLimit,BEGIN"})
    assert f["mail_type"] == ["BEGIN", "TIME_LIMIT"] and "mail_user" not in f  # the controller mails you
    assert build({"mail_type": "all"})["mail_type"] == ["BEGIN", "END", "FAIL", "REQUEUE"]
    assert build({"mail_type": "NONE"})["mail_type"] == []
    assert build({"mail_user": "bob"})["mail_user"] == "bob"
    assert "mail_type" not in build({}) and "extra_attr" not in build({"mail_type": "END"})


def test_extra_attr_kept_as_given():
    import json

    f = build({"extra_attr": '{"x": 1, "mail": {"type": "NONE"}}', "mail_type": "end,fail", "mail_user": "a@b"})
    assert json.loads(f["extra_attr"]) == {"x": 1, "mail": {"type": "NONE"}}
    assert f["mail_type"] == ["END", "FAIL"] and f["mail_user"] == "a@b"


@pytest.mark.parametrize("opts,msg", [
    ({"mail_type": "SOMETIMES"}, "invalid --mail-type: unknown mail type 'SOMETIMES' (expected BEGIN, END, FAIL"),
    ({"mail_type": "NONE,END"}, "invalid --mail-type: mail type NONE cannot be combined"),
    ({"mail_type": ",".join(["END"] * 17)}, "invalid --mail-type: at most 16"),
    ({"mail_user": "a@b,c@d"}, "invalid --mail-user:"), ({"mail_user": "x\nBcc: y@z"}, "invalid --mail-user:"),
    ({"mail_user": "a" * 255}, "longer than 254"), ({"mail_user": ""}, "empty"),
])
def test_mail_errors(opts, msg):
    with pytest.raises(CliError) as exc:
        build(opts)
    assert exc.value.code == 2 and msg in str(exc.value) and "\n" not in str(exc.value)


def test_merge_cli_overrides_directives():
    merged = merge_options({"nodes": "1", "time": "5", "exclusive": True}, {"nodes": "4", "time": None})
    assert merged == {"nodes": "4", "time": "5", "exclusive": True}


def test_merge_exclusive_pairs_cli_wins():
    assert merge_options({"mem": "1G"}, {"mem_per_cpu": "100"}) == {"mem_per_cpu": "100"}
    assert merge_options({"requeue": True}, {"no_requeue": True}) == {"no_requeue": True}
    assert merge_options({"gres": "gpu:2"}, {"gpus_per_node": "1"}) == {"gpus_per_node": "1"}
    assert merge_options({"gres": "nic:1"}, {"gpus_per_node": "1"}) == {"gres": "nic:1", "gpus_per_node": "1"}
    assert merge_options({"gpus_per_node": "1"}, {"gres": "gpu:2"}) == {"gres": "gpu:2"}
