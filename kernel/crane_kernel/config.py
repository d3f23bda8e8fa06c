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
from typing import Any, Literal

import yaml
from crane_common.hostlist import HostlistError, expand
from crane_common.units import config_duration, parse_memory
from crane_common.units import parse_duration as parse_duration  # re-exported for existing importers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crane_kernel.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/crane/config.yaml"
CONFIG_ENV = "CRANE_CONFIG"

# Memory amounts and durations are read by crane_common.units, the one parser of each: a bare
# number is MB / minutes; a YAML number given to a duration key is seconds (config_duration).


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
    PreemptMode: Literal["OFF", "CANCEL", "REQUEUE", "SUSPEND"] = "OFF"  # how higher-priority partitions preempt it

    @field_validator("PreemptMode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("DefaultMemPerCpu", "MaxMemPerCpu", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v) if v else 0

    @field_validator("DefaultTimeLimit", "MaxTimeLimit", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return int(config_duration(v)) if v else 0

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
    Events: list[str] = Field(default_factory=list)                        # cplugind's event plugins
    Accounting: str | None = None                                          # the job-history store (cacct)
    Gres: list[str] = Field(default_factory=lambda: ["devices"])          # GRES device choice, vendor env
    Lifecycle: list[str] = Field(default_factory=lambda: ["standard"])    # the requeue decision
    Preempt: str | None = "preempt_standard"                                    # victim choice (docs/preemption.md)
    Settings: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("Gres", "Lifecycle", mode="before")
    @classmethod
    def _one_name(cls, v: Any) -> Any:
        """A single name is a list of one."""
        return [v] if isinstance(v, str) else v


PRIVATE_DATA = ("jobs", "usage", "nodes", "partitions")
class TlsConfig(_Model):
    """TLS on the gRPC API (``CraneCtld.Tls:``); paths are relative to CraneBaseDir.

    Server side: ``Cert``/``Key`` (set: cranectld serves TLS only), ``ClientCA`` (set: clients must
    present a certificate it signed, mTLS). Client side (read by the commands): ``CA`` (verify the
    server against it), ``ClientCert``/``ClientKey`` (for mTLS) and ``ServerName`` (the name the
    server certificate must carry, default ``ControlMachine``).
    """

    Cert: str = ""
    Key: str = ""
    ClientCA: str = ""
    CA: str = ""
    ClientCert: str = ""
    ClientKey: str = ""
    ServerName: str = ""

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if bool(self.Cert) != bool(self.Key):
            raise ValueError("Cert and Key go together")
        if self.ClientCA and not self.Cert:
            raise ValueError("ClientCA needs Cert and Key")
        return self


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
    # Interactive work (docs/interactive.md): crun/calloc streams, each holds one API thread of its own
    InteractiveHeartbeat: float = Field(10.0, gt=0, le=3600)   # seconds between a client's pings
    InteractiveTimeout: float = Field(30.0, gt=0, le=86400)    # silence after which a client counts as gone
    MaxInteractiveStreams: int = Field(256, ge=1, le=100_000)
    MaxInteractiveStreamsPerUser: int = Field(32, ge=1, le=100_000)
    MaxStepsPerJob: int = Field(100_000, ge=1)                 # steps one job may create over its life
    DependencyNeverSatisfied: Literal["cancel", "keep"] = "cancel"  # a job whose dependency can never hold
    MaxArrayTasks: int = Field(10_000, ge=1, le=4_000_001)  # tasks of one --array (docs/arrays.md)
    ArrayPendingWindow: int = Field(64, ge=1, le=100_000)   # an array's created tasks waiting at a time (no %max)
    PreemptGraceTime: float = Field(0.0, ge=0, le=86400)  # seconds a CANCEL/REQUEUE victim runs on after SIGTERM
    SlurmEnvironment: bool = True   # jobs also get SLURM_JOB_ID, SLURM_NTASKS, ... beside their CRANE_* twins
    # Input bounds (docs/configuration.md, docs/security.md "Input bounds and privacy"): a request
    # outside them is refused at submit with one line; nothing of it is stored.
    MinCpusPerTask: float = Field(0.01, gt=0, le=1)       # smallest CPU share a cgroup quota enforces
    MinMemPerNode: int = 16 << 20                          # memory floor: keeps the root supervisor off the OOM killer
    MaxCpusPerNode: float = Field(4096.0, gt=0)
    MaxNodesPerJob: int = Field(10_000, gt=0)
    MaxTasksPerJob: int = Field(1_000_000, gt=0)
    MaxTimeLimit: int = Field(365 * 86400, gt=0)          # seconds; also caps partitions without a maximum
    MaxScriptBytes: int = Field(1 << 20, gt=0)
    MaxEnvVars: int = Field(4096, ge=0)
    MaxEnvBytes: int = Field(1 << 20, ge=0)
    MaxNameBytes: int = Field(256, gt=0)                   # job name, account, partition, QoS
    MaxCommentBytes: int = Field(4096, ge=0)
    MaxPathBytes: int = Field(4096, gt=0)                  # cwd, output/error/input patterns, interpreter
    MaxJobsPerSubmit: int = Field(100_000, gt=0)           # jobs in one SubmitBatchJobs call
    MaxHostlistExpand: int = Field(100_000, gt=0)          # host names one host-list expression may expand to
    # Privacy, like Slurm's PrivateData: "jobs" hides other users' jobs (and their steps) from
    # non-operators; "usage" hides other users' usage figures. Without "jobs", other users' jobs are
    # listed but their scripts, environments, command lines, comments and paths stay hidden.
    PrivateData: list[str] = Field(default_factory=list)

    @field_validator("MinMemPerNode", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v)

    @field_validator("MaxTimeLimit", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return int(config_duration(v))

    @field_validator("PrivateData", mode="before")
    @classmethod
    def _private(cls, v: Any) -> list[str]:
        items = [a.strip().lower() for a in v.split(",")] if isinstance(v, str) else [str(a).lower() for a in v or []]
        bad = [a for a in items if a and a not in PRIVATE_DATA]
        if bad:
            raise ValueError(f"unknown PrivateData item(s) {', '.join(bad)} (known: {', '.join(PRIVATE_DATA)})")
        return [a for a in items if a]
    Tls: TlsConfig = Field(default_factory=TlsConfig)


class CranedConfig(_Model):
    """Node daemon tuning (``Craned:`` section)."""

    PingInterval: float = 5.0            # heartbeat period, seconds
    KillWait: float = 5.0                # SIGTERM -> SIGKILL grace, seconds


class AuthConfig(_Model):
    """Where the cluster key lives and who the admins are."""

    KeyFile: str = ""                    # default <CraneBaseDir>/cluster.key
    ClientCredential: Literal["token", "munge"] = "token"   # what the commands present (client side)
    Admins: list[str] = Field(default_factory=lambda: ["root"])


class BusConfig(_Model):
    """How daemons authenticate to Redis (``Bus:`` section; see docs/security.md, "The bus")."""

    Auth: bool = True                    # ACL users and signed node commands; off only for a throw-away Redis
    CredentialsDir: str = ""             # default <CraneBaseDir>/bus (root-only: 0700, files 0600)
    TlsCaFile: str = ""                  # CA of the Redis server's certificate (rediss:// URLs)
    TlsCertFile: str = ""                # client certificate, if Redis asks for one
    TlsKeyFile: str = ""                 # its key
    AclSelectors: bool = True            # Redis >= 7 selectors confine cplugind's XADD and rq keys; false: Redis 6.2


class AccountingConfig(_Model):
    """What the account database enforces (``Accounting:`` section; see docs/accounts.md).

    ``Enforce`` lists Slurm's ``AccountingStorageEnforce`` words: ``associations`` (a job must
    name an account its user belongs to, or gets the user's default; blocked users and accounts
    cannot submit; the account's and the user's partitions apply), ``qos`` (the QoS must be one the
    user may use; the default QoS when none is given) and ``limits`` (the QoS limits, at
    submission and at schedule time; implies ``qos``). Empty: the account database is kept and
    shown but not enforced (a cluster before its admin has added accounts).
    """

    Enforce: list[Literal["associations", "qos", "limits"]] = Field(default_factory=list)


class PlugindConfig(_Model):
    """``Plugind:``: the event-plugin host ``cplugind`` and the events stream it reads.

    ``MaxRetries`` failed attempts of one event (after the first) before it goes to the plugin's
    dead-letter stream; the wait before retry *n* is ``RetryBase * 2**(n-1)`` seconds, at most
    ``RetryCap``. ``StatusInterval`` is how often the status hash is written; ``Batch`` entries
    are read per XREADGROUP; ``RecentIds`` ids per plugin are remembered to skip duplicates;
    ``ClaimIdle`` is how long an entry must sit in another consumer's pending list before this
    host claims it at start. ``EventsMaxLen`` bounds the events stream (the controller trims it
    approximately at XADD): the buffer a lagging plugin has.
    """

    MaxRetries: int = Field(5, ge=0, le=1000)
    RetryBase: float = Field(0.5, ge=0, le=3600)
    RetryCap: float = Field(30.0, ge=0, le=86400)
    StatusInterval: float = Field(1.0, gt=0, le=3600)
    Batch: int = Field(100, ge=1, le=10_000)
    RecentIds: int = Field(10_000, ge=0, le=10_000_000)
    ClaimIdle: float = Field(60.0, ge=0)
    EventsMaxLen: int = Field(1_000_000, ge=1000)
    LogFile: str = ""


class CforedConfig(_Model):
    """The login node's interactive forwarder (``Cfored:`` section; crane_cli/cfored.py, docs/interactive.md)."""

    Socket: str = ""   # its Unix socket, relative to CraneBaseDir; "" = none: crun/calloc call the controller directly


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
    Cfored: CforedConfig = Field(default_factory=CforedConfig)
    Auth: AuthConfig = Field(default_factory=AuthConfig)
    Bus: BusConfig = Field(default_factory=BusConfig)
    Accounting: AccountingConfig = Field(default_factory=AccountingConfig)
    Plugind: PlugindConfig = Field(default_factory=PlugindConfig)
    # Compatibility alias: the cgroup settings now belong to the cgroup runtime plugin
    # (Plugins.Settings.cgroup). A top-level Cgroup: section is passed through unvalidated as that
    # plugin's settings (crane_kernel.plugins.config_selection), and the plugin validates it.
    Cgroup: dict[str, Any] = Field(default_factory=dict)
    # Cluster licenses (cbatch -L; ctld/licenses.py, docs/reservations.md): name -> count, or upstream's
    # list form [{name: fluent, quantity: 30}]
    Licenses: dict[str, int] = Field(default_factory=dict)

    @field_validator("DefaultMemPerCpu", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory(v)

    @field_validator("Licenses", mode="before")
    @classmethod
    def _licenses(cls, v: Any) -> dict[str, int]:
        if v is None:
            return {}
        if isinstance(v, list):  # upstream's form
            out: dict[str, Any] = {}
            for item in v:
                if not isinstance(item, dict) or "name" not in item:
                    raise ValueError("each license is {name: <name>, quantity: <count>}")
                if str(item["name"]) in out:
                    raise ValueError(f"license {item['name']} is defined twice")
                out[str(item["name"])] = item.get("quantity", item.get("count", 0))
            v = out
        if not isinstance(v, dict):
            raise ValueError("Licenses is a mapping of name to count")
        for name, count in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", str(name)):
                raise ValueError(f"license name {str(name)[:40]!r}: letters, digits, '_', '.' or '-' (at most 64)")
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**31:
                raise ValueError(f"license {name}: the count must be a whole number from 0 to 2^31-1")
        return {str(k): int(c) for k, c in v.items()}

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
    def bus_dir(self) -> str:
        """Where the bus credentials live (``Bus.CredentialsDir``, default ``<CraneBaseDir>/bus``)."""
        return self.Bus.CredentialsDir or os.path.join(self.base_dir, "bus")

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
