"""The part of the cluster configuration a client command needs.

Where: ``-C/--config PATH``, else ``$CRANE_CONFIG``, else ``/etc/crane/config.yaml``.
What: ``ControlMachine`` (default ``localhost``), ``CraneCtldListenPort`` (default
10011), ``CraneBaseDir`` (default ``/var/crane/``), ``Auth.KeyFile`` (default
``<CraneBaseDir>/cluster.key``; a relative path is taken relative to the base
dir; the host token ``root.token`` is looked for beside it), ``ClusterName``,
``Auth.ClientCredential`` (``token``, the default, or ``munge``: send a MUNGE
credential) and the client side of TLS, ``CraneCtld.Tls``: ``CA`` (the CA
certificate the controller's certificate must chain to; set, the commands talk
TLS and verify the server), ``ClientCert``/``ClientKey`` (a client certificate
for mTLS; ``$CRANE_TLS_CERT``/``$CRANE_TLS_KEY`` override them) and
``ServerName`` (the name to check the certificate against, default
``ControlMachine``), and ``Cfored.Socket`` (the login node's interactive forwarder crun and
calloc use when its socket exists). Relative paths are taken relative to the base dir.
Everything else in the file is ignored.

A missing or unparsable file is a :class:`~crane_cli.errors.CliError` with exit
code 2. The file is parsed with PyYAML's C ``CSafeLoader`` (the pure-Python
``SafeLoader`` if libyaml is missing).

Importing PyYAML alone costs ~12 ms, an eighth of a command's latency budget, so
the few values read here are cached per user in
``$XDG_CACHE_HOME/crane/clientconf-<crc>.marshal`` (default ``~/.cache/crane``),
keyed by the config file's absolute path and validated against its
``(mtime_ns, size, inode, device)``: any change to the file re-parses it.
Set ``CRANE_NO_CONF_CACHE=1`` to bypass the cache. Cache failures are ignored.
"""

from __future__ import annotations

import os

from crane_cli.errors import EXIT_ARGS, CliError

DEFAULT_CONFIG_PATH = "/etc/crane/config.yaml"
CONFIG_ENV = "CRANE_CONFIG"
DEFAULT_CONTROL_MACHINE = "localhost"
DEFAULT_PORT = 10011
DEFAULT_BASE_DIR = "/var/crane/"
DEFAULT_KEY_FILE_NAME = "cluster.key"
HOST_TOKEN_NAME = "root.token"
CREDENTIALS = ("token", "munge")


class ClientConfig:
    """Client-side view of ``config.yaml``."""

    __slots__ = ("path", "control_machine", "port", "base_dir", "key_file", "cluster_name", "credential",
                 "tls_ca", "tls_cert", "tls_key", "tls_server_name", "cfored_socket")

    def __init__(self, path: str, control_machine: str = DEFAULT_CONTROL_MACHINE, port: int = DEFAULT_PORT,
                 base_dir: str = DEFAULT_BASE_DIR, key_file: str | None = None, cluster_name: str = "",
                 credential: str = "token", tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None, cfored_socket: str = "") -> None:
        self.path = path
        self.control_machine = control_machine
        self.port = port
        self.base_dir = base_dir
        self.key_file = key_file or os.path.join(base_dir, DEFAULT_KEY_FILE_NAME)
        self.cluster_name = cluster_name
        self.credential = credential
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_server_name = tls_server_name
        self.cfored_socket = cfored_socket  # the login node's interactive forwarder (cfored), "" = none

    @property
    def host_token_file(self) -> str:
        """The controller's host token (readable by root on the controller host only)."""
        return os.path.join(os.path.dirname(os.path.abspath(self.key_file)), HOST_TOKEN_NAME)

    @property
    def target(self) -> str:
        """The gRPC target ``host:port`` of cranectld."""
        host = self.control_machine
        if ":" in host and not host.startswith("["):  # bare IPv6 address
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"ClientConfig({fields})"


def config_path(cli_value: str | None = None) -> str:
    """The config file to read: the ``-C`` value, else ``$CRANE_CONFIG``, else the default path."""
    return cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def _fail(path: str, reason: str) -> CliError:
    return CliError(f"Failed to read config file {path}: {reason}", EXIT_ARGS)


def parse_text(text: str | bytes, path: str = "<config>") -> ClientConfig:
    """Build a :class:`ClientConfig` from YAML text (raises :class:`CliError`, exit code 2)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise _fail(path, f"invalid YAML: {reason}") from None
    return from_mapping(data, path)


def from_mapping(data: object, path: str = "<config>") -> ClientConfig:
    """Validate the parsed YAML document and pick the client keys out of it."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, "the top level must be a mapping")

    def text(key: str, default: str) -> str:
        """A string-valued key, ``default`` when absent or empty."""
        value = data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, (dict, list)):
            raise _fail(path, f"{key} must be a string")
        return str(value)

    host = text("ControlMachine", DEFAULT_CONTROL_MACHINE)
    port_value = data.get("CraneCtldListenPort", DEFAULT_PORT)
    try:
        port = int(port_value)
        if isinstance(port_value, bool) or not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise _fail(path, f"CraneCtldListenPort must be a port number, not {port_value!r}") from None
    base_dir = text("CraneBaseDir", DEFAULT_BASE_DIR)
    auth = data.get("Auth") or {}
    if not isinstance(auth, dict):
        raise _fail(path, "Auth must be a mapping")
    key_file = auth.get("KeyFile")
    if key_file is not None and not isinstance(key_file, str):
        raise _fail(path, "Auth.KeyFile must be a string")
    if key_file:
        key_file = os.path.join(base_dir, os.path.expanduser(key_file))
    credential = auth.get("ClientCredential") or "token"
    if credential not in CREDENTIALS:
        raise _fail(path, f"Auth.ClientCredential must be one of {', '.join(CREDENTIALS)}, not {credential!r}")
    ctld = data.get("CraneCtld") or {}
    tls = ctld.get("Tls") if isinstance(ctld, dict) else None
    if tls is not None and not isinstance(tls, dict):
        raise _fail(path, "CraneCtld.Tls must be a mapping")
    tls = tls or {}

    def tls_path(key: str) -> str | None:
        """A TLS file path of ``CraneCtld.Tls`` (relative to the base dir), None when unset."""
        value = tls.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _fail(path, f"CraneCtld.Tls.{key} must be a string")
        return os.path.join(base_dir, os.path.expanduser(value))

    server_name = tls.get("ServerName")
    cfored = data.get("Cfored") or {}
    if not isinstance(cfored, dict) or not isinstance(cfored.get("Socket", ""), str):
        raise _fail(path, "Cfored must be a mapping with a Socket path")
    sock = cfored.get("Socket") or ""
    return ClientConfig(path, host, port, base_dir, key_file or None, text("ClusterName", ""), credential,
                        tls_path("CA"), tls_path("ClientCert"), tls_path("ClientKey"),
                        str(server_name) if server_name else None,
                        os.path.join(base_dir, os.path.expanduser(sock)) if sock else "")


CACHE_VERSION = 3
_FIELDS = ("control_machine", "port", "base_dir", "key_file", "cluster_name", "credential", "tls_ca", "tls_cert",
           "tls_key", "tls_server_name", "cfored_socket")


def cache_file(path: str) -> str:
    """The cache file for the config at absolute ``path``."""
    import zlib

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crane", f"clientconf-{zlib.crc32(path.encode()):08x}.marshal")


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def _cache_get(path: str, stamp: tuple[int, int, int, int]) -> ClientConfig | None:
    import marshal

    try:
        with open(cache_file(path), "rb") as fh:
            entry = marshal.load(fh)
        if entry.get("v") != CACHE_VERSION or entry.get("path") != path or tuple(entry.get("stamp", ())) != stamp:
            return None
        values = entry["conf"]
        return ClientConfig(path, *(values[k] for k in _FIELDS))
    except Exception:  # noqa: BLE001 - a missing, stale or damaged cache just means parsing the file
        return None


def _cache_put(path: str, stamp: tuple[int, int, int, int], conf: ClientConfig) -> None:
    import marshal

    target = cache_file(path)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        data = marshal.dumps({"v": CACHE_VERSION, "path": path, "stamp": list(stamp),
                              "conf": {k: getattr(conf, k) for k in _FIELDS}})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        try:
            os.unlink(tmp)
        except Exception:  # noqa: BLE001
            pass


def load(cli_value: str | None = None, use_cache: bool | None = None) -> ClientConfig:
    """Find, read and parse the config file (see the module docs); errors exit with code 2."""
    path = config_path(cli_value)
    if use_cache is None:
        use_cache = not os.environ.get("CRANE_NO_CONF_CACHE")
    try:
        with open(path, "rb") as fh:
            stamp = _stamp(os.fstat(fh.fileno()))
            abspath = os.path.abspath(path)
            if use_cache:
                cached = _cache_get(abspath, stamp)
                if cached is not None:
                    cached.path = path
                    return cached
            raw = fh.read()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory") from None
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    conf = parse_text(raw, path)
    if use_cache:
        _cache_put(abspath, stamp, conf)
    return conf
