"""``CriRuntime``: the ``crane.runtime`` plugin named ``cri`` (container jobs as CRI pods on containerd).

One pod per container job: RunPodSandbox (labels ``crane.job``/``crane.node``, the parent cgroup
``<prefix>/<node>/pod_<id>`` with the job's limits, network NODE unless told otherwise, pid
CONTAINER), CreateContainer (always with ``sandbox_config``: containerd 1.6.20 crashes without it),
StartContainer; the exit is polled with ContainerStatus (containerd 1.6 has no exit events).
The CRI log file is converted into the job's output files as the job runs. Cleanup removes the
container and the pod, the log files and the parent cgroup. See docs/containers.md.

No gRPC channel is opened in ``crane_plugin_configure``: the plugin is configured in craned's
launcher, which forks the step supervisors, and a gRPC channel must not cross a fork. Each
supervisor opens its own channel at launch; craned's ``crane_step_reap`` opens and closes one.
grpc and the generated modules are imported with the plugin (in the launcher, before the fork):
imported lazily, every supervisor paid ~0.5 s for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from crane_common.states import EC_CONTAINER_ERR, EC_FILE_NOT_FOUND, EC_PERMISSION_DENIED
from crane_kernel import hookimpl
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepHandle, StepSpec, StepUsage

from crane_runtime_cri import cgroups, cri_pb2, cri_pb2_grpc  # cri_pb2*: generated at build time
from crane_runtime_cri.config import CriConfig, parse_config
from crane_runtime_cri.logs import LogPump

log = logging.getLogger("crane_runtime_cri")

RUNTIME_NAME = "cri"
LABEL_JOB = "crane.job"
LABEL_NODE = "crane.node"
SCRIPT_IN_CONTAINER = "/.crane/script"
DEFAULT_INTERPRETER = "/bin/bash"
MAX_POLL_S = 0.25   # the ContainerStatus poll backs off from PollInterval to this as the job runs longer


class CriError(Exception):
    """A CRI call failed; the message is one line."""


def _pb() -> tuple[Any, Any]:
    return cri_pb2, cri_pb2_grpc


class Cri:
    """A small client of the CRI RuntimeService/ImageService on a unix socket (one channel)."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        self.grpc = grpc
        self.pb, pbg = _pb()
        self.endpoint = endpoint
        self.timeout = timeout
        if not os.path.exists(endpoint):
            raise CriError(f"the container runtime socket {endpoint} does not exist (is containerd running?)")
        self.channel = grpc.insecure_channel(f"unix://{endpoint}")
        self.rt = pbg.RuntimeServiceStub(self.channel)
        self.img = pbg.ImageServiceStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def call(self, stub: Any, method: str, request: Any, timeout: float | None = None) -> Any:
        """Call ``method``; raises CriError with a one-line reason."""
        try:
            return getattr(stub, method)(request, timeout=timeout or self.timeout)
        except self.grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") and exc.code() else "ERROR"
            details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
            if code == "UNAVAILABLE":
                details = f"the container runtime at {self.endpoint} is unavailable ({details.splitlines()[0][:200]})"
            raise CriError(f"{method}: {code} {' '.join(details.split())[:300]}") from None


@dataclass
class CriStepHandle(StepHandle):
    """A step running as a CRI pod.

    ``pod_id``/``container_id`` are the runtime's ids; ``cgroup`` is the parent cgroup (relative);
    ``log_dir`` the pod's CRI log directory. ``stopped`` is set when the plugin stopped the
    container (a cancel or a time limit: never reported as OOM); ``exit_code``/``reason`` are the
    container's once it exited.
    """

    pod_id: str = ""
    container_id: str = ""
    cgroup: str = ""
    cgroup_root: str = ""
    log_dir: str = ""
    exit_code: int | None = None
    reason: str = ""
    stopped: bool = False
    cleaned: bool = False
    started: float = 0.0
    out_fd: int = -1
    err_fd: int = -1
    pump: LogPump | None = None
    client: Any = None
    stopper: threading.Thread | None = field(default=None, repr=False)


def _parse_user(spec: StepSpec) -> tuple[int, int]:
    user = (spec.container or {}).get("user") or ""
    if not user:
        return spec.uid, spec.gid
    uid_s, _, gid_s = user.partition(":")
    uid = int(uid_s)
    if gid_s:
        return uid, int(gid_s)
    return uid, (spec.gid if uid == spec.uid else uid)


def _open_as_user(spec: StepSpec) -> tuple[int, int]:
    """Open the job's stdout/stderr files as the job's user (open_mode honoured); (-1 = /dev/null)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY
    flags |= os.O_APPEND if spec.open_mode == "append" else os.O_TRUNC
    groups = os.getgroups()
    opened: list[int] = []
    try:
        try:
            os.setgroups(os.getgrouplist(spec.user, spec.gid) if spec.user else [spec.gid])
        except (KeyError, OSError):
            os.setgroups([spec.gid])
        os.setegid(spec.gid)
        os.seteuid(spec.uid)
        try:
            out = os.open(spec.stdout, flags, 0o644) if spec.stdout else -1
            opened.append(out)
            err = out if not spec.stderr or spec.stderr == spec.stdout else os.open(spec.stderr, flags, 0o644)
            opened.append(err)
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(groups)
    except FileNotFoundError as exc:
        for fd in set(opened):
            if fd >= 0:
                os.close(fd)
        raise StepLaunchError(f"cannot open the output file {exc.filename}: no such directory",
                              EC_FILE_NOT_FOUND) from None
    except PermissionError as exc:
        for fd in set(opened):
            if fd >= 0:
                os.close(fd)
        raise StepLaunchError(f"cannot open the output file {exc.filename} as {spec.user}: permission denied",
                              EC_PERMISSION_DENIED) from None
    return out, err


def _remove_pod(cli: Cri, pod_id: str) -> None:
    """Stop and remove every container of pod ``pod_id``, then the pod itself (raises CriError)."""
    pb = cli.pb
    ctrs = cli.call(cli.rt, "ListContainers", pb.ListContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=pod_id))).containers
    for ctr in ctrs:
        cli.call(cli.rt, "StopContainer", pb.StopContainerRequest(container_id=ctr.id, timeout=0))
        cli.call(cli.rt, "RemoveContainer", pb.RemoveContainerRequest(container_id=ctr.id))
    cli.call(cli.rt, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    cli.call(cli.rt, "RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


class CriRuntime:
    """Runs container jobs (steps with ``spec.container``) as CRI pods; leaves every other step to the next runtime.

    Settings (``Plugins.Settings.cri``): ``Endpoint``, ``Timeout``, ``StopTimeout``, ``LogRoot``,
    ``CgroupRoot``, ``Prefix``, ``Namespace``, ``Network``, ``Shell``, ``PollInterval``
    (:class:`~crane_runtime_cri.config.CriConfig`).
    """

    name = RUNTIME_NAME

    def __init__(self) -> None:
        """Start with the default configuration."""
        self.config = CriConfig()

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Apply the settings (no connection is made here: see the module docstring)."""
        self.config = parse_config(settings)

    # -- launch ------------------------------------------------------------

    def _client(self) -> Cri:
        try:
            return Cri(self.config.endpoint, self.config.timeout)
        except CriError as exc:
            raise StepLaunchError(f"cri runtime: {exc}", EC_CONTAINER_ERR) from None

    def _pod_config(self, pb: Any, step: StepSpec, cgroup_parent: str, log_dir: str) -> Any:
        c = step.container or {}
        network = pb.NODE if (c.get("host_network") or self.config.network == "node") else pb.POD
        ns = pb.NamespaceOption(network=network, pid=pb.CONTAINER, ipc=pb.POD)
        ports = []
        for p in c.get("ports") or []:
            host, _, cont = str(p).partition(":")
            ports.append(pb.PortMapping(protocol=pb.TCP, container_port=int(cont or host), host_port=int(host)))
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=c.get("pod_name") or f"job-{step.job_id}", uid=uuid.uuid4().hex,
                                           namespace=self.config.namespace),
            log_directory=log_dir,
            labels={LABEL_JOB: str(step.job_id), LABEL_NODE: step.node},
            port_mappings=ports,
            linux=pb.LinuxPodSandboxConfig(cgroup_parent="/" + cgroup_parent,
                                           security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)))
        if c.get("dns"):
            cfg.dns_config.servers.extend(c["dns"])
        return cfg, ns

    def _container_config(self, pb: Any, step: StepSpec, ns: Any, script: str) -> Any:
        c = step.container or {}
        uid, gid = _parse_user(step)
        if c.get("command"):
            command = list(c["command"])
        else:
            interp = list(step.interpreter) or [self.config.shell]
            if interp == [DEFAULT_INTERPRETER]:
                interp = [self.config.shell]
            command = [*interp, SCRIPT_IN_CONTAINER]
        mounts = [pb.Mount(container_path=SCRIPT_IN_CONTAINER, host_path=script, readonly=True)]
        cwd = step.cwd or "/"
        if uid != step.uid and step.uid != 0:
            cwd = "/"  # another host uid (no user namespaces): it must not get the user's files
        if cwd != "/" and os.path.isdir(cwd):
            mounts.append(pb.Mount(container_path=cwd, host_path=cwd, readonly=False))
        devices = [pb.Device(container_path=d, host_path=d, permissions="rwm") for d in step.devices_allow]
        quota = max(1000, int(step.cpus * cgroups.PERIOD_US))
        res = pb.LinuxContainerResources(cpu_period=cgroups.PERIOD_US, cpu_quota=quota,
                                         memory_limit_in_bytes=int(step.mem_bytes))
        if step.cpu_ids:
            res.cpuset_cpus = ",".join(str(i) for i in sorted(step.cpu_ids))
        sec = pb.LinuxContainerSecurityContext(namespace_options=ns, run_as_user=pb.Int64Value(value=uid),
                                               run_as_group=pb.Int64Value(value=gid), no_new_privs=True)
        if uid == step.uid:
            try:
                groups = [g for g in os.getgrouplist(step.user, gid) if g != gid] if step.user else []
            except (KeyError, OSError):
                groups = []
            sec.supplemental_groups.extend(groups)
        env = dict(step.env)
        env["CRANE_CONTAINER_IMAGE"] = c["image"]
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="main"), image=pb.ImageSpec(image=c["image"]), command=command,
            working_dir=cwd, envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()], mounts=mounts,
            devices=devices, labels={LABEL_JOB: str(step.job_id), LABEL_NODE: step.node}, log_path="main.log",
            linux=pb.LinuxContainerConfig(resources=res, security_context=sec))

    @staticmethod
    def _remove_stale_pods(cli: Cri, step: StepSpec) -> None:
        """Remove pods an earlier run of this job left on this node (a requeue after a crash); one List call."""
        pb = cli.pb
        sel = {LABEL_JOB: str(step.job_id), LABEL_NODE: step.node}
        pods = cli.call(cli.rt, "ListPodSandbox", pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(label_selector=sel))).items
        for pod in pods:
            log.warning("job %s: removing the pod %s an earlier run left", step.job_id, pod.id[:12])
            _remove_pod(cli, pod.id)

    @hookimpl
    def crane_step_launch(self, step: StepSpec) -> CriStepHandle | None:
        """Run the step's container in a new pod; ``None`` for a step without a container.

        Raises StepLaunchError with EC_CONTAINER_ERR (runtime down, image missing, CRI refusal),
        EC_FILE_NOT_FOUND or EC_PERMISSION_DENIED (output files); nothing is left behind then.
        """
        c = step.container
        if not c:
            return None
        if c.get("userns"):
            raise StepLaunchError("cri runtime: user namespaces (--pod-userns) are not supported by this runtime",
                                  EC_CONTAINER_ERR)
        run_uid, run_gid = _parse_user(step)
        if step.uid != 0 and (run_uid == 0 or run_gid == 0):
            raise StepLaunchError("cri runtime: only root may run a container as uid or gid 0 (--pod-user)",
                                  EC_PERMISSION_DENIED)
        cfg = self.config
        t0 = time.monotonic()
        try:
            rel = cgroups.parent_path(cfg.prefix, step.node, step.job_id)
        except ValueError as exc:
            raise StepLaunchError(f"cri runtime: {exc}", EC_CONTAINER_ERR) from None
        log_dir = os.path.join(cfg.log_root, step.node, f"job_{step.job_id}")
        out, err = _open_as_user(step)
        handle = CriStepHandle(runtime=RUNTIME_NAME, pid=0, spec=step, cgroup=rel, cgroup_root=cfg.cgroup_root,
                               log_dir=log_dir, out_fd=out, err_fd=err)
        try:
            handle.client = cli = self._client()
            pb = cli.pb
            cli.call(cli.rt, "Version", pb.VersionRequest(version="v1"))
            st = cli.call(cli.img, "ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=c["image"])))
            if not st.image.id:
                raise CriError(f"image {c['image']!r} is not in the node's image store (import it; nodes do not pull)")
            os.makedirs(log_dir, mode=0o700, exist_ok=True)
            os.chmod(os.path.dirname(log_dir), 0o700)
            script = os.path.join(log_dir, "script")
            uid, gid = _parse_user(step)
            shutil.copyfile(step.script_path, script)
            os.chown(script, uid, gid)
            os.chmod(script, 0o500)
            try:
                cgroups.create(cfg.cgroup_root, rel, step.cpus, step.mem_bytes)
            except OSError as exc:
                raise CriError(f"cannot create the pod cgroup {rel}: {exc.strerror}") from None
            self._remove_stale_pods(cli, step)
            pod_cfg, ns = self._pod_config(pb, step, rel, log_dir)
            handle.pod_id = cli.call(cli.rt, "RunPodSandbox", pb.RunPodSandboxRequest(config=pod_cfg)).pod_sandbox_id
            ctr_cfg = self._container_config(pb, step, ns, script)
            handle.container_id = cli.call(cli.rt, "CreateContainer", pb.CreateContainerRequest(
                pod_sandbox_id=handle.pod_id, config=ctr_cfg, sandbox_config=pod_cfg)).container_id
            handle.pump = LogPump(os.path.join(log_dir, "main.log"), out, err)
            cli.call(cli.rt, "StartContainer", pb.StartContainerRequest(container_id=handle.container_id))
            handle.started = time.monotonic()
        except (CriError, OSError) as exc:
            reason = str(exc) if isinstance(exc, CriError) else f"{type(exc).__name__}: {exc}"
            self._teardown(handle)
            raise StepLaunchError(f"cri runtime: {reason}", EC_CONTAINER_ERR) from None
        except BaseException:
            self._teardown(handle)
            raise
        log.info("job %s: container %s started in pod %s (image %s) in %.0f ms", step.job_id,
                 handle.container_id[:12], handle.pod_id[:12], c["image"], (time.monotonic() - t0) * 1000)
        return handle

    # -- running -----------------------------------------------------------

    def _status(self, handle: CriStepHandle) -> Any:
        cli = handle.client
        req = cli.pb.ContainerStatusRequest(container_id=handle.container_id)
        return cli.call(cli.rt, "ContainerStatus", req).status

    @hookimpl
    def crane_step_wait(self, handle: CriStepHandle, timeout: float | None) -> int | None:
        """Poll ContainerStatus until the container exited or ``timeout`` passed; its exit code (0-255).

        Every ``PollInterval`` at first, backing off to :data:`MAX_POLL_S` as the job runs longer
        (``elapsed / 20``: 50 ms after 1 s, 250 ms after 5 s).

        The CRI log is converted into the job's files on every poll. A runtime that stopped
        answering ends the step with EC_CONTAINER_ERR.
        """
        if handle.exit_code is not None:
            return handle.exit_code
        deadline = None if timeout is None else time.monotonic() + timeout
        pb = handle.client.pb
        while True:
            try:
                st = self._status(handle)
            except CriError as exc:
                log.error("job %s: cannot read the container's status: %s", handle.spec.job_id, exc)
                time.sleep(min(0.5, timeout or 0.5))
                try:
                    st = self._status(handle)
                except CriError:
                    handle.exit_code, handle.reason = EC_CONTAINER_ERR, str(exc)
                    return handle.exit_code
            if handle.pump is not None:
                handle.pump.pump()
            if st.state == pb.CONTAINER_EXITED:
                handle.exit_code, handle.reason = int(st.exit_code), st.reason
                if handle.pump is not None:
                    handle.pump.pump()
                return handle.exit_code
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            # short jobs are seen ending within PollInterval; a long one costs at most 4 RPCs a second
            pause = min(MAX_POLL_S, max(self.config.poll_interval, (now - handle.started) / 20))
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            time.sleep(pause)

    def _stop(self, handle: CriStepHandle, timeout: int) -> None:
        cli = handle.client
        try:
            cli.call(cli.rt, "StopContainer", cli.pb.StopContainerRequest(container_id=handle.container_id,
                                                                          timeout=timeout),
                     timeout=self.config.timeout + timeout)
        except CriError as exc:
            log.warning("job %s: StopContainer failed: %s", handle.spec.job_id, exc)

    @hookimpl
    def crane_step_signal(self, handle: CriStepHandle, signum: int, all_processes: bool) -> bool | None:
        """SIGTERM: StopContainer with ``StopTimeout`` (in the background); SIGKILL: StopContainer now.

        CRI has no other signals: SIGCONT and the rest are accepted and do nothing. The plugin
        remembers that it stopped the container, so the end is never taken for an OOM kill.
        """
        if handle.exit_code is not None or not handle.container_id:
            return True
        if signum in (signal.SIGKILL, signal.SIGTERM) and cgroups.is_frozen(handle.cgroup_root, handle.cgroup):
            cgroups.freeze(handle.cgroup_root, handle.cgroup, False)  # a frozen container cannot be stopped
        if signum == signal.SIGKILL:
            handle.stopped = True
            self._stop(handle, 0)
        elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            handle.stopped = True
            if handle.stopper is None:
                handle.stopper = threading.Thread(target=self._stop, args=(handle, self.config.stop_timeout),
                                                  daemon=True, name=f"cri-stop-{handle.spec.job_id}")
                handle.stopper.start()
        return True

    @hookimpl
    def crane_step_suspend(self, handle: CriStepHandle) -> bool | None:
        """Freeze the pod's parent cgroup (CRI has no pause); False if that failed."""
        return cgroups.freeze(handle.cgroup_root, handle.cgroup, True)

    @hookimpl
    def crane_step_resume(self, handle: CriStepHandle) -> bool | None:
        """Thaw the pod's parent cgroup."""
        return cgroups.freeze(handle.cgroup_root, handle.cgroup, False)

    @hookimpl
    def crane_step_usage(self, handle: CriStepHandle) -> StepUsage | None:
        """CPU time and peak memory of the pod's parent cgroup; OOM from the container's reason ``OOMKilled``."""
        cpu_ms, peak = cgroups.usage(handle.cgroup_root, handle.cgroup)
        oom = handle.reason == "OOMKilled" and not handle.stopped
        return StepUsage(cpu_time_ms=cpu_ms, mem_peak_bytes=peak, oom_killed=oom)

    # -- cleanup -----------------------------------------------------------

    def _teardown(self, handle: CriStepHandle) -> bool:
        """Stop and remove the container and the pod, delete the log directory and the parent cgroup."""
        ok = True
        cli = handle.client
        if handle.cgroup and cgroups.is_frozen(handle.cgroup_root, handle.cgroup):
            cgroups.freeze(handle.cgroup_root, handle.cgroup, False)  # a frozen container cannot be stopped
        if cli is not None:
            pb = cli.pb
            steps = []
            if handle.container_id:
                steps += [("StopContainer", pb.StopContainerRequest(container_id=handle.container_id, timeout=0)),
                          ("RemoveContainer", pb.RemoveContainerRequest(container_id=handle.container_id))]
            if handle.pod_id:
                steps += [("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=handle.pod_id)),
                          ("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=handle.pod_id))]
            for method, req in steps:
                try:
                    cli.call(cli.rt, method, req)
                except CriError as exc:
                    ok = False
                    log.error("job %s: %s", handle.spec.job_id, exc)
        if handle.pump is not None:
            handle.pump.pump()
        for fd in {handle.out_fd, handle.err_fd}:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        handle.out_fd = handle.err_fd = -1
        shutil.rmtree(handle.log_dir, ignore_errors=True)
        if handle.cgroup and not cgroups.remove(handle.cgroup_root, handle.cgroup):
            ok = False
        if cli is not None and ok:
            cli.close()
            handle.client = None
        return ok

    @hookimpl
    def crane_step_cleanup(self, handle: CriStepHandle) -> bool | None:
        """Remove the container and the pod, the CRI log files and the parent cgroup; idempotent."""
        if handle.cleaned:
            return True
        if handle.client is None and (handle.pod_id or handle.container_id):
            try:
                handle.client = Cri(self.config.endpoint, self.config.timeout)
            except CriError as exc:
                log.error("job %s: cleanup: %s", handle.spec.job_id, exc)
        handle.cleaned = self._teardown(handle)
        return handle.cleaned

    @hookimpl
    def crane_step_reap(self, node: str, job_id: int, step_id: int) -> bool | None:
        """Remove the pods (and their containers) labelled with this node and job, their logs and cgroup.

        Called by craned for a job whose supervisor died. ``None`` when the job has nothing of
        this runtime here (also when containerd is not running: then no pod can run either).
        """
        return self.reap(node, {int(job_id)})

    @hookimpl
    def crane_node_reconcile(self, node: str, known_jobs: frozenset[int]) -> None:
        """At craned's start: remove this node's pods (labelled ``crane.node``) of jobs it no longer knows."""
        if self.reap(node, None, keep=set(known_jobs)):
            log.info("cri: removed pods of jobs node %s no longer knows", node)

    def reap(self, node: str, job_ids: set[int] | None, keep: set[int] | None = None) -> bool | None:
        """Remove this node's pods of ``job_ids`` (``None``: every job not in ``keep``); best effort.

        The reconciliation after a crash: pods are found by their ``crane.node``/``crane.job``
        labels. Returns ``None`` when nothing was found, True when all was removed, False if not.
        """
        cfg = self.config
        found = False
        ok = True
        try:
            cli = Cri(cfg.endpoint, cfg.timeout)
        except CriError:
            cli = None
        jobs: set[int] = set(job_ids or ())
        if cli is not None:
            pb = cli.pb
            try:
                pods = cli.call(cli.rt, "ListPodSandbox", pb.ListPodSandboxRequest(
                    filter=pb.PodSandboxFilter(label_selector={LABEL_NODE: node}))).items
                for pod in pods:
                    jid = pod.labels.get(LABEL_JOB, "")
                    if not jid.isdigit():
                        continue
                    jid_i = int(jid)
                    if job_ids is not None and jid_i not in job_ids:
                        continue
                    if job_ids is None and keep is not None and jid_i in keep:
                        continue
                    found = True
                    jobs.add(jid_i)
                    _remove_pod(cli, pod.id)
                    log.info("job %s: removed its leftover pod %s", jid, pod.id[:12])
            except CriError as exc:
                log.error("reconciling the pods of node %s failed: %s", node, exc)
                ok = False
            finally:
                cli.close()
        for jid_i in jobs:
            try:
                rel = cgroups.parent_path(cfg.prefix, node, jid_i)
            except ValueError:
                continue
            log_dir = os.path.join(cfg.log_root, node, f"job_{jid_i}")
            if os.path.isdir(log_dir):
                found = True
                shutil.rmtree(log_dir, ignore_errors=True)
            if cgroups.exists(cfg.cgroup_root, rel):
                found = True
                ok = cgroups.remove(cfg.cgroup_root, rel) and ok
        if not found:
            return None if ok else False
        return ok


__all__ = ["CriRuntime", "CriStepHandle", "CriError", "Cri", "RUNTIME_NAME"]
