"""A private containerd with an offline busybox image, for container-job tests, the demo and benchmarks.

- :func:`available` says whether this machine can run one (containerd, ctr, runc and a static
  busybox installed, and we are root); :func:`unavailable_reason` says why not.
- :func:`build_busybox_image` writes an OCI image-layout tar built with the standard library
  alone from ``/bin/busybox`` (Debian's busybox-static): one uncompressed layer with busybox and
  its applet links, ``etc/passwd``/``etc/group``, ``tmp`` (1777) and empty ``proc``, ``sys`` and
  ``dev``; named :data:`IMAGE` (``localhost/crane-busybox:1``). It doubles as the sandbox image.
- :class:`PrivateContainerd` is a context manager that runs ``containerd`` on a socket of its own
  under a directory (config = ``containerd config default`` plus the two changes of
  docs/containers.md: ``restrict_oom_score_adj = true``, ``sandbox_image = IMAGE``), imports the
  image into the ``k8s.io`` namespace, and on exit stops it and removes everything (shims,
  overlay mounts under its root, the directory).

Usage::

    with PrivateContainerd("/tmp/ctrd") as ctrd:
        ctrd.socket  # -> "/tmp/ctrd/containerd.sock" for the cri plugin's Endpoint
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

IMAGE = "localhost/crane-busybox:1"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ash", "sleep", "true", "false", "cat", "echo", "dd", "id", "env", "ls", "pwd", "printf",
           "head", "tail", "wc", "grep", "sed", "mkdir", "rm", "touch", "test", "[", "kill", "ps", "hostname",
           "whoami", "yes", "seq", "date", "uname", "stat", "chmod", "cp", "mv", "ln", "sort", "tr", "cut")
TOOLS = ("containerd", "ctr", "runc")


def unavailable_reason() -> str:
    """Why a private containerd cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "a private containerd needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install containerd runc)"
    if not os.path.isfile(BUSYBOX):
        return f"{BUSYBOX} missing (apt-get install busybox-static)"
    return ""


def available() -> bool:
    """True when a private containerd can run here (root, containerd, ctr, runc, /bin/busybox).

    :func:`unavailable_reason` says why not.
    """
    return not unavailable_reason()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname, info.mtime = mode, kind, link, 0
    info.uid = info.gid = 0
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555), ("sys", 0o555),
                        ("dev", 0o755), ("root", 0o700), ("home", 0o755)):
            _add(tar, d, mode=mode, kind=tarfile.DIRTYPE)
        _add(tar, "bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
        for applet in APPLETS:
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    _add(tar, f"blobs/sha256/{digest}", data)
    return f"sha256:{digest}"


def build_busybox_image(path: str | os.PathLike, name: str = IMAGE) -> str:
    """Write an OCI image-layout tar of busybox to ``path`` (stdlib only); returns the image name."""
    layer = _layer()
    with tarfile.open(path, "w") as tar:
        _add(tar, "blobs", mode=0o755, kind=tarfile.DIRTYPE)
        _add(tar, "blobs/sha256", mode=0o755, kind=tarfile.DIRTYPE)
        layer_digest = _blob(tar, layer)
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "2147483647"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
        config_digest = _blob(tar, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": len(layer)}]}).encode()
        manifest_digest = _blob(tar, manifest)
        index = json.dumps({
            "schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                "size": len(manifest), "annotations": {"io.containerd.image.name": name,
                                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}],
        }).encode()
        _add(tar, "index.json", index)
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return name


def write_config(path: str | os.PathLike, sandbox_image: str = IMAGE) -> None:
    """``containerd config default`` with the two changes a test node needs (docs/containers.md)."""
    default = subprocess.run(["containerd", "config", "default"], check=True, capture_output=True,
                             text=True).stdout
    out = []
    for line in default.splitlines():
        key = line.strip().split(" ", 1)[0]
        indent = line[:len(line) - len(line.lstrip())]
        if key == "restrict_oom_score_adj":
            line = f"{indent}restrict_oom_score_adj = true"
        elif key == "sandbox_image":
            line = f'{indent}sandbox_image = "{sandbox_image}"'
        out.append(line)
    Path(path).write_text("\n".join(out) + "\n")


class PrivateContainerd:
    """A containerd of its own under ``directory`` (socket ``<dir>/containerd.sock``), with :data:`IMAGE` imported.

    ``with PrivateContainerd(d) as c:`` starts it (:meth:`start`) and stops and cleans it up on exit
    (:meth:`stop`). ``c.socket`` is the CRI endpoint; :meth:`ctr` runs ``ctr`` against it in the
    ``k8s.io`` namespace. The directory should be short (a unix socket path is at most 107 bytes).
    """

    def __init__(self, directory: str | os.PathLike, image: bool = True, start_timeout: float = 20.0) -> None:
        self.dir = Path(directory).resolve()
        self.socket = str(self.dir / "containerd.sock")
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.image = image
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrivateContainerd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ctr(self, *args: str, check: bool = True) -> str:
        """Run ``ctr -a SOCK -n k8s.io ARGS``; its stdout."""
        res = subprocess.run(["ctr", "-a", self.socket, "-n", "k8s.io", *args], capture_output=True, text=True,
                             timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def start(self) -> None:
        """Write the config, start containerd, wait for its socket and import the image."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_config(self.dir / "config.toml")
        log = open(self.dir / "containerd.log", "ab")
        try:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.dir / "config.toml"), "--address", self.socket,
                 "--root", str(self.root), "--state", str(self.state)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.proc.returncode}); see {self.dir}/containerd.log")
            if os.path.exists(self.socket):
                try:
                    self.ctr("version")
                    break
                except RuntimeError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not come up in {self.start_timeout:g} s")
            time.sleep(0.05)
        if self.image:
            tar = self.dir / "busybox.tar"
            build_busybox_image(tar)
            self.ctr("images", "import", str(tar))

    def kill(self) -> None:
        """Stop the containerd daemon only (shims and containers keep running): "containerd is down"."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        """Stop containerd and its shims, unmount what is mounted under it and remove the directory."""
        self.kill()
        self.proc = None
        self._kill_shims()
        self._unmount()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_shims(self) -> None:
        """Kill the runc shims (and their containers) started for this containerd's state directory."""
        marker = str(self.dir)
        parents: dict[int, int] = {}
        shims: list[int] = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
            if "containerd-shim" in cmd and marker in cmd:
                shims.append(int(pid))
        victims = set(shims)
        grown = True
        while grown:  # the shims' descendants: the containers' processes
            more = {p for p, pp in parents.items() if pp in victims and p not in victims}
            victims |= more
            grown = bool(more)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _unmount(self) -> None:
        """Lazily unmount every mount point below the directory, deepest first."""
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        prefix = str(self.dir) + "/"
        points = [m.split()[1].replace("\\040", " ") for m in mounts if len(m.split()) > 1]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
