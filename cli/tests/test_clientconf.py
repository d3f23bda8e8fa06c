"""Client config loading, defaults, errors and the parse cache."""

import os

import pytest

from crane_cli import clientconf
from crane_cli.errors import CliError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CRANE_NO_CONF_CACHE", raising=False)
    monkeypatch.delenv("CRANE_CONFIG", raising=False)


def test_defaults():
    conf = clientconf.parse_text("{}")
    assert (conf.control_machine, conf.port, conf.base_dir) == ("localhost", 10011, "/var/crane/")
    assert conf.key_file == "/var/crane/cluster.key"
    assert conf.cluster_name == ""
    assert conf.target == "localhost:10011"
    assert clientconf.parse_text("").port == 10011


def test_values():
    conf = clientconf.parse_text("ControlMachine: head\nCraneCtldListenPort: 1234\nCraneBaseDir: /opt/crane\n"
                                 "ClusterName: c1\nAuth:\n  KeyFile: keys/k\nOther: [1, 2]\n")
    assert conf.target == "head:1234"
    assert conf.key_file == "/opt/crane/keys/k"
    assert conf.cluster_name == "c1"
    assert clientconf.parse_text("Auth: {KeyFile: /etc/k}\n").key_file == "/etc/k"
    assert clientconf.parse_text("ControlMachine: '::1'\n").target == "[::1]:10011"


@pytest.mark.parametrize("text,msg", [
    ("a: [1,\n", "invalid YAML"), ("- 1\n- 2\n", "mapping"), ("CraneCtldListenPort: x\n", "port"),
    ("CraneCtldListenPort: 70000\n", "port"), ("CraneCtldListenPort: true\n", "port"), ("Auth: 3\n", "Auth"),
    ("Auth: {KeyFile: [1]}\n", "KeyFile"), ("ControlMachine: {a: 1}\n", "ControlMachine"),
])
def test_errors(text, msg):
    with pytest.raises(CliError, match=msg) as exc:
        clientconf.parse_text(text, "x.yaml")
    assert exc.value.code == 2
    assert "\n" not in exc.value.message


def test_path_resolution(monkeypatch):
    assert clientconf.config_path() == "/etc/crane/config.yaml"
    monkeypatch.setenv("CRANE_CONFIG", "/env.yaml")
    assert clientconf.config_path() == "/env.yaml"
    assert clientconf.config_path("/cli.yaml") == "/cli.yaml"


def test_missing_file(tmp_path):
    with pytest.raises(CliError, match="no such file") as exc:
        clientconf.load(str(tmp_path / "nope.yaml"))
    assert exc.value.code == 2
    with pytest.raises(CliError, match="directory"):
        clientconf.load(str(tmp_path))


def test_cache_roundtrip_and_invalidation(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("ControlMachine: one\n")
    first = clientconf.load(str(path))
    cache = clientconf.cache_file(os.path.abspath(path))
    assert os.path.exists(cache)
    assert oct(os.stat(cache).st_mode & 0o777) == "0o600"
    second = clientconf.load(str(path))
    assert second.control_machine == first.control_machine == "one"
    path.write_text("ControlMachine: two-longer\n")
    assert clientconf.load(str(path)).control_machine == "two-longer"
    # a damaged cache is ignored and rewritten
    with open(clientconf.cache_file(os.path.abspath(path)), "wb") as fh:
        fh.write(b"garbage")
    assert clientconf.load(str(path)).control_machine == "two-longer"


def test_cache_does_not_hide_errors(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("ControlMachine: one\n")
    clientconf.load(str(path))
    path.write_text("ControlMachine: [\n")
    with pytest.raises(CliError):
        clientconf.load(str(path))


def test_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANE_NO_CONF_CACHE", "1")
    path = tmp_path / "config.yaml"
    path.write_text("ControlMachine: one\n")
    clientconf.load(str(path))
    assert not os.path.exists(clientconf.cache_file(os.path.abspath(path)))


def test_unwritable_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-dir")
    path = tmp_path / "config.yaml"
    path.write_text("ControlMachine: one\n")
    assert clientconf.load(str(path)).control_machine == "one"
