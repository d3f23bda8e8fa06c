"""Dispatch: the launch message a job's head node gets, and re-sending launches not confirmed in time.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). Callers hold the controller's lock.
"""

from __future__ import annotations

import logging

from crane_common.hostlist import compress
from crane_common.states import JobState

from crane_kernel import messages as m
from crane_kernel.ctld.jobs import Job

log = logging.getLogger("cranectld")

_INJECTOR_VARS = {
    "nvidia": ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"),
    "hip": ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"),
    "ascend": ("ASCEND_RT_VISIBLE_DEVICES",),
}


def device_environment(devices: list[str], device_env: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The ``*_VISIBLE_DEVICES`` variables for the devices a job got (indices among the node's devices of a kind)."""
    by_injector: dict[str, list[int]] = {}
    for dev in devices:
        injector, index = device_env.get(dev, ("", -1))
        if injector in _INJECTOR_VARS:
            by_injector.setdefault(injector, []).append(index)
    env: dict[str, str] = {}
    for injector, indices in by_injector.items():
        for var in _INJECTOR_VARS[injector]:
            env[var] = ",".join(str(i) for i in sorted(indices))
    if devices:
        env["CRANE_JOB_GRES_DEVICES"] = ",".join(devices)
    return env


class DispatchMixin:
    """Launch messages and their retry."""

    def _launch_message(self, job: Job, spec: dict) -> m.LaunchStep:
        """The ``LaunchStep`` for the job's head node; ``spec`` is the job's stored submission."""
        nodelist = compress(list(job.alloc_nodes))
        env = dict(spec.get("env") or {})
        env.update({
            "CRANE_JOB_ID": str(job.job_id),
            "CRANE_JOB_NAME": job.name,
            "CRANE_JOB_NODELIST": nodelist,
            "CRANE_JOB_NUM_NODES": str(job.node_num),
            "CRANE_SUBMIT_DIR": spec.get("submit_dir") or spec.get("cwd", ""),
            "CRANE_SUBMIT_HOST": spec.get("submit_host", ""),
            "CRANE_JOB_PARTITION": job.partition,
            "CRANE_JOB_ACCOUNT": job.account,
            "CRANE_JOB_QOS": job.qos,
            "CRANE_JOB_USER": job.user,
            "CRANE_JOB_UID": str(job.uid),
            "CRANE_NTASKS": str(spec.get("ntasks", job.node_num * job.ntasks_per_node)),
            "CRANE_NTASKS_PER_NODE": str(job.ntasks_per_node),
            "CRANE_CPUS_PER_TASK": f"{job.cpus_per_task:g}",
            "CRANE_CPUS_ON_NODE": f"{job.cpus_per_node:g}",
            "CRANE_MEM_PER_NODE": str(job.mem_per_node >> 20),
            "CRANE_TIMELIMIT": str(job.time_limit),
            "CRANE_CLUSTER_NAME": self.cluster,
        })
        head = self.nodes[job.head_node]
        devices = (job.devices or {}).get(job.head_node, [])
        all_devices = [d for devs in head.gres_devices.values() for d in devs]
        env.update(device_environment(devices, head.device_env))
        launch = m.LaunchSpec(
            name=job.name, uid=job.uid, gid=job.gid, user=job.user, cwd=spec.get("cwd") or "/",
            script=spec.get("script", ""), interpreter=spec.get("interpreter") or "/bin/bash", env=env,
            output=spec.get("output", ""), error=spec.get("error", ""), input=spec.get("input", ""),
            open_mode=spec.get("open_mode") or "truncate", cpus=job.cpus_per_node, cpu_ids=head.cpu_ids,
            mem_bytes=job.mem_per_node, time_limit=job.time_limit, devices_allow=devices,
            devices_deny=[d for d in all_devices if d not in devices])
        return m.LaunchStep(job_id=job.job_id, step_id=1, spec=launch, epoch=job.epoch)

    def _retry_dispatch(self, now: float, outbox: list) -> None:
        retry = self.cfg.CraneCtld.DispatchRetry
        late = [j for j in self.running.values()
                if j.state == JobState.Configuring and now - j.dispatch_time > retry]
        if not late:
            return
        specs = self.store.specs([j.job_id for j in late])
        for job in late:
            if self.nodes[job.head_node].alive:
                job.dispatch_time = now
                log.info("re-sending launch of job %d to %s", job.job_id, job.head_node)
                outbox.append((self.node_stream(job.head_node), self._launch_message(job, specs[job.job_id])))
