"""Configuration: validation errors name the file, the key and the reason."""

from __future__ import annotations

import pytest
from crane_kernel.config import load_config, parse_duration, parse_memory
from crane_kernel.errors import ConfigError

GOOD = """
ClusterName: t
CraneBaseDir: {base}
Nodes:
  - {{name: "cn[01-04]", cpu: 4, memory: 8G}}
  - {{name: gpu1, cpu: 8, memory: 16G, gres: [{{name: gpu, type: a100, DeviceFileList: [/dev/null, /dev/zero]}}]}}
Partitions:
  - {{name: cpu, nodes: "cn[01-04]", priority: 2, DefaultMemPerCpu: 1G}}
  - {{name: all, nodes: ALL}}
"""


def write(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return str(p)


def test_good_config(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.format(base=tmp_path)))
    assert cfg.DefaultPartition == "cpu"
    assert list(cfg.node_table()) == ["cn01", "cn02", "cn03", "cn04", "gpu1"]
    assert cfg.node_table()["cn01"].memory == 8 << 30
    assert cfg.Partitions[0].DefaultMemPerCpu == 1 << 30
    assert cfg.node_table()["gpu1"].gres[0].count == 2
    assert cfg.partition_nodes(cfg.Partitions[1])[-1] == "gpu1"
    assert cfg.Plugins.Scheduler == "fifo"


@pytest.mark.parametrize("text,key,reason", [
    ("Nodes: []\n", "Partitions", "required key is missing"),
    ("Nodes: [{name: a, cpu: x, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\n", "Nodes.0.cpu", "number"),
    ("Nodes: [{name: a, cpu: 1, memory: lots}]\nPartitions: [{name: p, nodes: a}]\n", "Nodes.0.memory",
     "invalid memory"),
    ("Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: b}]\n", "Partitions.p.nodes", "unknown"),
    ("Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\nBogus: 1\n", "Bogus", "unknown key"),
    ("Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\nDefaultPartition: q\n",
     "DefaultPartition", "no partition"),
])
def test_errors_name_file_key_reason(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(path) and key in msg and reason in msg
    assert "\n" not in msg


def test_not_yaml_and_missing(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_units():
    assert parse_memory("512") == 512 << 20
    assert parse_memory("2G") == 2 << 30
    assert parse_memory("1.5g") == int(1.5 * (1 << 30))
    assert parse_duration("1-00:00:00") == 86400
    assert parse_duration("00:00:03") == 3
    assert parse_duration("10") == 600
    assert parse_duration("2:30") == 150
