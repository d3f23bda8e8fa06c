"""Cluster configuration: ``/etc/crane/config.yaml``, validated.

Key names follow upstream CraneSched where one exists (``ClusterName``,
``ControlMachine``, ``CraneCtldListenPort``, ``CraneBaseDir``, ``Nodes``,
``Partitions``, ``DefaultPartition``, ``DefaultMemPerCpu``); cranesched adds
``RedisUrl``, ``Plugins`` and a few tuning sections. Every validation error is
reported as one line naming the file, the key and what is wrong. See
docs/configuration.md for every key.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from crane_common.hostlist import HostlistError, expand
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crane_kernel.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/crane/config.yaml"
CONFIG_ENV = "CRANE_CONFIG"

_MEM_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([KkMmGgTtB]?)(?:i?[Bb])?\s*$")
_MEM_MULT = {"": 1 << 20, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(value: Any) -> int:
    """Parse a memory amount (``512``, ``2G``, ``1.5g``, ``100M``) into bytes; plain numbers are MB."""
    if isinstance(value, bool):
        raise ValueError(f"invalid memory amount {value!r}")
    if isinstance(value, (int, float)):
        return int(value * (1 << 20))
    m = _MEM_RE.match(str(value))
    if not m:
        raise ValueError(f"invalid memory amount {value!r} (use e.g. 512M, 2G)")
    return int(float(m.group(1)) * _MEM_MULT[m.group(2).lower()])


def parse_duration(value: Any) -> int:
    """Parse a time limit (``[D-]HH:MM:SS``, ``MM:SS``, ``MM`` or seconds as int) into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        secs = parts[0] * 60 if not days else parts[0] * 3600
    elif len(parts) == 2:
        secs = (parts[0] * 3600 + parts[1] * 60) if days else (parts[0] * 60 + parts[1])
    elif len(parts) == 3:
        secs = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        raise ValueError(f"invalid duration {value!r}")
    return days * 86400 + secs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GresConfig(_Model):
    """One generic resource type on a node (e.g. GPUs backed by device files)."""

    name: str
    type: str = ""
    count: int | None = None
    DeviceFileList: list[str] = Field(default_factory=list)
    DeviceFileRegex: str = ""
    EnvInjector: str = "nvidia"

    @model_validator(mode="after")
    def _devices(self) -> "GresConfig":
        if self.DeviceFileRegex and not self.DeviceFileList:
            self.DeviceFileList = expand(self.DeviceFileRegex)
        if self.count is None:
            self.count = len(self.DeviceFileList)
        if self.count <= 0:
            raise ValueError(f"gres {self.name}: give DeviceFileList/DeviceFileRegex or a positive count")
        return self

    @property
    def key(self) -> str:
        """The scheduler's key for this resource: ``name`` or ``name:type``."""
        return f"{self.name}:{self.type}" if self.type else self.name


class NodeConfig(_Model):
    """A group of identical nodes (``name`` may be a host list like ``cn[01-16]``)."""

    name: str
    cpu: float = Field(gt=0)
    memory: int = Field(description="bytes")
    gres: list[GresConfig] = Field(default_factory=list)
    cpu_ids: list[int] = Field(default_factory=list)

    @field_validator("memory", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v)


class PartitionConfig(_Model):
    """A partition: its nodes (host list or ``ALL``), priority and defaults."""

    name: str
    nodes: str
    priority: int = 0
    DefaultMemPerCpu: int = 0
    MaxMemPerCpu: int = 0
    DefaultTimeLimit: int = 0
    MaxTimeLimit: int = 0
    AllowedAccounts: list[str] = Field(default_factory=list)
    DeniedAccounts: list[str] = Field(default_factory=list)

    @field_validator("DefaultMemPerCpu", "MaxMemPerCpu", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v) if v else 0

    @field_validator("DefaultTimeLimit", "MaxTimeLimit", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return parse_duration(v) if v else 0

    @field_validator("AllowedAccounts", "DeniedAccounts", mode="before")
    @classmethod
    def _list(cls, v: Any) -> list[str]:
        if isinstance(v, str):
            return [a.strip() for a in v.split(",") if a.strip()]
        return v or []


class PluginsConfig(_Model):
    """Which plugin fills each slot (names of entry points)."""

    Scheduler: str = "fifo"
    Priority: str | None = None
    Runtime: list[str] = Field(default_factory=lambda: ["cgroup"])
    Auth: list[str] = Field(default_factory=lambda: ["rbac"])
    JobFilters: list[str] = Field(default_factory=lambda: ["submit_checks"])
    Events: list[str] = Field(default_factory=list)
    Gres: list[str] = Field(default_factory=lambda: ["devices"])          # GRES device choice, vendor env
    Lifecycle: list[str] = Field(default_factory=lambda: ["standard"])    # the requeue decision
    Settings: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("Gres", "Lifecycle", mode="before")
    @classmethod
    def _one_name(cls, v: Any) -> Any:
        """A single name is a list of one."""
        return [v] if isinstance(v, str) else v


class CtldConfig(_Model):
    """Controller tuning (``CraneCtld:`` section)."""

    CranedTimeout: float = 30.0          # seconds without heartbeat before a node is DOWN
    ScheduleInterval: float = 1.0        # seconds between periodic scheduling cycles
    ScheduleMinInterval: float = 0.02    # minimum gap between event-driven cycles
    JobRequeue: bool = False
    MaxRequeueCount: int = 5
    FinishedJobRetention: float = 300.0  # seconds an ended job stays visible to queries
    DispatchRetry: float = 10.0          # re-send a launch not confirmed within this many seconds
    GrpcWorkers: int = 8


class CranedConfig(_Model):
    """Node daemon tuning (``Craned:`` section)."""

    PingInterval: float = 5.0            # heartbeat period, seconds
    KillWait: float = 5.0                # SIGTERM -> SIGKILL grace, seconds


class AuthConfig(_Model):
    """Where the cluster key lives and who the admins are."""

    KeyFile: str = ""                    # default <CraneBaseDir>/cluster.key
    Admins: list[str] = Field(default_factory=lambda: ["root"])


class CgroupConfig(_Model):
    """Settings passed to the cgroup runtime plugin."""

    Version: str = "auto"
    Root: str = "/sys/fs/cgroup"
    Prefix: str = "crane"
    PidsMax: int = Field(0, ge=0)        # per-job limit on processes (0 = none)


class ClusterConfig(_Model):
    """The whole validated configuration."""

    ClusterName: str = "crane"
    ControlMachine: str = "localhost"
    CraneCtldListenAddress: str = "0.0.0.0"
    CraneCtldListenPort: int = Field(10011, ge=0, le=65535)
    CraneBaseDir: str = "/var/crane/"
    RedisUrl: str = "redis://127.0.0.1:6379/0"
    DefaultPartition: str = ""
    DefaultMemPerCpu: int = 128 << 20
    Nodes: list[NodeConfig]
    Partitions: list[PartitionConfig]
    Plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    CraneCtld: CtldConfig = Field(default_factory=CtldConfig)
    Craned: CranedConfig = Field(default_factory=CranedConfig)
    Auth: AuthConfig = Field(default_factory=AuthConfig)
    Cgroup: CgroupConfig = Field(default_factory=CgroupConfig)

    @field_validator("DefaultMemPerCpu", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v)

    @model_validator(mode="after")
    def _cross_check(self) -> "ClusterConfig":
        names: set[str] = set()
        for group in self.Nodes:
            for n in expand(group.name):
                if n in names:
                    raise ValueError(f"Nodes: node {n} is defined twice")
                names.add(n)
        seen: set[str] = set()
        for p in self.Partitions:
            if p.name in seen:
                raise ValueError(f"Partitions: partition {p.name} is defined twice")
            seen.add(p.name)
            members = sorted(names) if p.nodes.strip().upper() == "ALL" else expand(p.nodes)
            missing = [m for m in members if m not in names]
            if missing:
                raise ValueError(f"Partitions.{p.name}.nodes: unknown node(s) {', '.join(missing[:5])}")
        if not self.Partitions:
            raise ValueError("Partitions: at least one partition is required")
        if self.DefaultPartition and self.DefaultPartition not in seen:
            raise ValueError(f"DefaultPartition: no partition named {self.DefaultPartition}")
        if not self.DefaultPartition:
            self.DefaultPartition = self.Partitions[0].name
        return self

    # -- derived views -----------------------------------------------------
    def node_table(self) -> dict[str, NodeConfig]:
        """Every node name mapped to its (group) configuration."""
        return {n: g for g in self.Nodes for n in expand(g.name)}

    def partition_nodes(self, part: PartitionConfig) -> list[str]:
        """The node names of a partition, ``ALL`` resolved."""
        if part.nodes.strip().upper() == "ALL":
            return list(self.node_table())
        return expand(part.nodes)

    @property
    def base_dir(self) -> str:
        """CraneBaseDir as an absolute path."""
        return os.path.abspath(self.CraneBaseDir)

    @property
    def key_file(self) -> str:
        """Path of the cluster key used to sign and verify tokens."""
        return self.Auth.KeyFile or os.path.join(self.base_dir, "cluster.key")


def config_path(explicit: str | None = None) -> str:
    """The config file to use: explicit path, else ``$CRANE_CONFIG``, else /etc/crane/config.yaml."""
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p not in ("function-after",)) or "(top level)"


def load_config(path: str | None = None) -> ClusterConfig:
    """Load and validate the config; raise :class:`ConfigError` with ``file: key: reason``."""
    path = config_path(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(raw, path)


def parse_config(raw: Any, path: str = "<config>") -> ClusterConfig:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(raw).__name__}")
    try:
        return ClusterConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "required key is missing"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"{path}: {_loc(err)}: {msg}") from None
    except HostlistError as exc:
        raise ConfigError(f"{path}: {exc}") from None
