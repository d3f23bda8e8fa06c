"""Dispatch: the launch message a job's head node gets, and re-sending launches not confirmed in time.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). Callers hold the controller's lock.
The variables naming a job's devices for their vendor runtime (``CUDA_VISIBLE_DEVICES`` ...) come
from the gres plugins (``crane_gres_environment``).
"""

from __future__ import annotations

import logging

from crane_common.hostlist import compress
from crane_common.signals import parse_warn_signal
from crane_common.states import JobState

from crane_kernel import messages as m
from crane_kernel.ctld.jobs import Job
from crane_kernel.ctld.nodes import NodeState

log = logging.getLogger("cranectld")

SLURM_TWINS = {
    "SLURM_JOB_ID": "CRANE_JOB_ID", "SLURM_JOB_NAME": "CRANE_JOB_NAME", "SLURM_JOB_NODELIST": "CRANE_JOB_NODELIST",
    "SLURM_JOB_NUM_NODES": "CRANE_JOB_NUM_NODES", "SLURM_SUBMIT_DIR": "CRANE_SUBMIT_DIR",
    "SLURM_SUBMIT_HOST": "CRANE_SUBMIT_HOST", "SLURM_JOB_PARTITION": "CRANE_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT": "CRANE_JOB_ACCOUNT", "SLURM_JOB_QOS": "CRANE_JOB_QOS", "SLURM_JOB_USER": "CRANE_JOB_USER",
    "SLURM_JOB_UID": "CRANE_JOB_UID", "SLURM_NTASKS": "CRANE_NTASKS", "SLURM_NTASKS_PER_NODE": "CRANE_NTASKS_PER_NODE",
    "SLURM_CPUS_PER_TASK": "CRANE_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE": "CRANE_CPUS_ON_NODE",
    "SLURM_MEM_PER_NODE": "CRANE_MEM_PER_NODE", "SLURM_CLUSTER_NAME": "CRANE_CLUSTER_NAME",
}
"""The ``SLURM_*`` variables a job also gets (``CraneCtld.SlurmEnvironment``), from their ``CRANE_*`` twins."""


class DispatchMixin:
    """Launch messages and their retry."""

    def _job_env(self, job: Job, spec: dict) -> dict[str, str]:
        """``spec["env"]`` with the job's ``CRANE_*`` variables (the batch step's, and every task step's)."""
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
        if self.cfg.CraneCtld.SlurmEnvironment:  # scripts written for Slurm read these
            env.update({slurm: env[crane] for slurm, crane in SLURM_TWINS.items()})
            env["SLURM_JOBID"] = env["SLURM_JOB_ID"]
            env["SLURM_NNODES"] = env["SLURM_JOB_NUM_NODES"]
        return env

    def _launch_message(self, job: Job, spec: dict) -> m.LaunchStep:
        """The ``LaunchStep`` for the job's head node; ``spec`` is the job's stored submission."""
        env = self._job_env(job, spec)
        head = self.nodes[job.head_node]
        devices = (job.devices or {}).get(job.head_node, [])
        all_devices = head.gres.all_devices()
        if devices:
            env.update(self._gres_environment(job, devices, head))
            env["CRANE_JOB_GRES_DEVICES"] = ",".join(devices)
        launch = m.LaunchSpec(
            name=job.name, uid=job.uid, gid=job.gid, user=job.user, cwd=spec.get("cwd") or "/",
            script=spec.get("script", ""), interpreter=spec.get("interpreter") or "/bin/bash", env=env,
            output=spec.get("output", ""), error=spec.get("error", ""), input=spec.get("input", ""),
            open_mode=spec.get("open_mode") or "truncate", cpus=job.cpus_per_node, cpu_ids=head.cpu_ids,
            mem_bytes=job.mem_per_node, time_limit=job.time_limit, devices_allow=devices,
            devices_deny=[d for d in all_devices if d not in devices],
            container=spec.get("container") or None)
        if spec.get("signal"):  # --signal, checked at submission (speccheck.normalize_lifecycle)
            warn = parse_warn_signal(spec["signal"])
            launch.warn_signal, launch.warn_seconds, launch.warn_batch_only = warn
        return m.LaunchStep(job_id=job.job_id, step_id=0, spec=launch, epoch=job.epoch)

    def _gres_environment(self, job: Job, devices: list[str], head: NodeState) -> dict[str, str]:
        """The gres plugins' variables for the devices a job got on its head node (earlier plugins win)."""
        env: dict[str, str] = {}
        for answer in reversed(self.pm.hook.crane_gres_environment(devices=devices, node=head.gres)):
            if not isinstance(answer, dict):
                continue
            for k, v in answer.items():
                if isinstance(k, str) and isinstance(v, str):
                    env[k] = v
                else:
                    log.warning("job %d: gres plugin returned a non-string variable %r=%r; ignored", job.job_id, k, v)
        return env

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
