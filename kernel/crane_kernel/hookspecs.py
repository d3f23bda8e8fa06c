"""Every hook a cranesched plugin can implement, in one module.

Plugins implement hooks with ``from crane_kernel import hookimpl``. All hooks
are called with keyword arguments only, and an implementation may accept any
subset of a hook's arguments (pluggy's rule). Which plugins are registered is
decided by the configuration (``Plugins:`` in config.yaml): each *slot* is an
entry-point group, and plugins are selected by name through stevedore (see
:mod:`crane_kernel.plugins`).

Slots and where their hooks run (the authoritative table, with each slot's
allowed and required hooks, is :data:`crane_kernel.slots.SLOTS`; a plugin
implementing a hook outside its slot is refused at load time):

============  ===========================  ===========================================
slot          entry-point group            hooks (process)
============  ===========================  ===========================================
scheduler     ``crane.scheduler``          crane_schedule (cranectld, crane sim)
priority      ``crane.priority``           crane_job_priorities, crane_job_finished (cranectld, crane sim)
runtime       ``crane.runtime``            crane_step_* (step supervisor on craned)
auth          ``crane.auth``               crane_authenticate, crane_authorize (cranectld)
job filters   ``crane.job_filter``         crane_job_submit (cranectld)
gres          ``crane.gres``               crane_gres_select, crane_gres_environment (cranectld)
lifecycle     ``crane.lifecycle``          crane_job_requeue (cranectld)
preempt       ``crane.preempt``            crane_preempt (cranectld, crane sim)
events        ``crane.events``             crane_event (cplugind)
accounting    ``crane.accounting``         crane_history_query (cranectld)
(any slot)                                 crane_plugin_configure, crane_plugin_shutdown
============  ===========================  ===========================================

``docs/plugins.md`` documents every hook here; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from crane_kernel.auth_types import CallInfo, Identity
    from crane_kernel.clusterinfo import ClusterInfo
    from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
    from crane_kernel.gres import GresNode
    from crane_kernel.history import HistoryQuery
    from crane_kernel.runtime import StepHandle, StepSpec, StepUsage
    from crane_kernel.sched_types import ClusterView, Plan, SchedJob

hookspec = pluggy.HookspecMarker("crane")


# --------------------------------------------------------------------------
# plugin lifecycle (any slot; the kernel calls each plugin's own implementation)
# --------------------------------------------------------------------------

@hookspec
def crane_plugin_configure(settings: dict) -> None:
    """Apply the plugin's settings; called once per plugin, right after it is loaded.

    ``settings`` is ``Plugins.Settings.<name>`` from the config, merged over
    defaults the kernel supplies for the slot (the key file and admins for
    auth plugins; the legacy top-level ``Cgroup:`` section for the plugin
    named ``cgroup``). The kernel calls *this plugin's* implementation only,
    never a broadcast, before any other hook of the plugin. Raise (any
    exception, with a one-line message) to reject the settings: the daemon
    stops with ``<slot> plugin '<name>' rejected its settings: <message>``. A
    plugin that does not implement this hook may not be given settings.
    Return value ignored.
    """


@hookspec
def crane_plugin_shutdown() -> None:
    """Release what the plugin holds; called once when the process that loaded it stops.

    Called by cranectld and craned on a clean stop, by the launcher when
    craned closes it, by ``crane sim`` and ``crane bench sched`` at the end
    of a run, and for the already-loaded plugins when loading a later one
    fails. Each plugin's own implementation is called, in reverse load order;
    an exception is logged and does not stop the others. Not called in step
    supervisors (forked children that end with ``os._exit``). Return value
    ignored.
    """


# --------------------------------------------------------------------------
# scheduling
# --------------------------------------------------------------------------

@hookspec(firstresult=True)
def crane_schedule(view: "ClusterView", now: float) -> "Plan | None":
    """Decide which pending jobs start now and where.

    Called by cranectld once per scheduling cycle (and by ``crane sim`` at
    every simulated event) with a read-only :class:`~crane_kernel.sched_types.ClusterView`
    whose ``pending`` jobs already carry their priority. Return a
    :class:`~crane_kernel.sched_types.Plan`: jobs to start with their node
    indices, pending reasons for the others, and reservations.

    firstresult: the single configured scheduler plugin answers; returning
    ``None`` means "no opinion" and leaves every job pending.
    """


@hookspec(firstresult=True)
def crane_preempt(view: "ClusterView", plan: "Plan", now: float) -> "bool | None":
    """Choose running jobs to preempt for pending jobs the scheduler's plan could not start.

    Called by cranectld (and ``crane sim``) right after ``crane_schedule`` in the same scheduling
    phase, without the lock, and only when ``view.preemption`` is set (a
    :class:`~crane_kernel.sched_types.PreemptRules`: the QoS ``Preempt`` lists and modes, the
    preemptions still in progress). ``plan`` is the scheduler's answer; the plugin adds to it:

    * ``plan.preempt[victim_id] = PreemptOrder(preemptor_id, mode)`` for each running job to
      preempt, with the mode :func:`~crane_kernel.sched_types.preempt_mode` gives;
    * ``plan.preempt_nodes[preemptor_id] = [node indices]``: the ``node_num`` nodes the preemptor is
      to run on once its victims are gone (each victim runs on at least one of them);
    * a preemptor whose victims are all ``SUSPEND`` may be appended to ``plan.starts`` on those
      nodes (their CPUs are free at once); others get reason ``WaitingForPreemption``.

    The kernel checks every order (``ctld/preempt.py``) and drops a preemptor's whole set when one
    victim is not allowed by the rules, is not on its nodes, or is not needed there (the job fits
    without it), then carries out the rest. Return True when orders were added (None: none).

    firstresult: one preempt plugin (``Plugins.Preempt``, default ``standard``) answers.
    """


@hookspec(firstresult=True)
def crane_job_priorities(jobs: "Sequence[SchedJob]", view: "ClusterView", now: float) -> "Sequence[float] | None":
    """Compute the priority of each pending job.

    Called by cranectld before each scheduling cycle (and by ``crane sim``)
    with the candidate jobs; return one float per job, in the same order
    (higher runs first). Jobs whose ``pinned_priority`` is set keep that value
    whatever is returned. Batched (rather than one call per job) because a
    cycle may hold 100,000 jobs.

    firstresult: the configured priority plugin answers; ``None`` (or no
    priority plugin) means every job gets priority 0, i.e. submit order.
    """


@hookspec
def crane_job_finished(job: "SchedJob", start_time: float, end_time: float) -> None:
    """Record that a job which ran from ``start_time`` to ``end_time`` has ended.

    Called in-process by cranectld when a job that had started ends (and, at
    start-up, for recently ended jobs read back from the state store, oldest
    first), and by ``crane sim`` on every simulated completion. Priority
    plugins use it for historical usage (fair share). Every registered
    implementation runs; must be cheap and must not raise.
    """


# --------------------------------------------------------------------------
# runtime (called in the step supervisor on the node)
# --------------------------------------------------------------------------

@hookspec(firstresult=True)
def crane_step_launch(step: "StepSpec") -> "StepHandle | None":
    """Start the processes of one step, isolated and limited as ``step`` says.

    Called in the step supervisor. Runtime plugins are asked one by one in
    configured order (:class:`~crane_kernel.runtime.StepDispatcher`); the
    first one that claims the step returns a
    :class:`~crane_kernel.runtime.StepHandle`, and the kernel records it as
    the step's owner (``handle.runtime`` = the plugin's configured name);
    return ``None`` to leave the step to the next runtime. Every later
    runtime hook for this step is called on the owner only. Raise
    :class:`~crane_kernel.errors.StepLaunchError` with a Crane exit code to
    fail the step (e.g. cgroup error, spawn failure).

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_wait(handle: "StepHandle", timeout: float | None) -> "int | None":
    """Wait up to ``timeout`` seconds (``None`` = forever) for the step's main process to end.

    Return the raw exit code (0-255 exit status, 256+N killed by signal N)
    once it has ended, or ``None`` while it is still running. For a task step
    (``handle.spec.tasks``) the step has ended when every task has: the plugin
    records each task's raw code in ``handle.task_exit`` as it ends, and
    returns :func:`crane_kernel.iostream.worst_exit` of them at the end. Like every
    runtime hook taking a ``handle``, it is called only on the plugin that
    launched the step.

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_signal(handle: "StepHandle", signum: int, all_processes: bool) -> "bool | None":
    """Send ``signum`` to the step's main process group, or to every process in it when ``all_processes``.

    Used for cancellation and time limits (SIGTERM, then SIGKILL to all).
    Return True when the owning plugin handled it.

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_suspend(handle: "StepHandle") -> "bool | None":
    """Freeze every process of the step (freezer cgroup). Return True when handled.

    Called in the step supervisor for ``ccontrol suspend`` (craned/jobctl.py). Return True once
    every process is frozen, False when freezing failed (leave nothing half frozen), None when
    this runtime cannot freeze: the node reports the failure and the controller resumes the job
    with the reason (docs/lifecycle.md).

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_resume(handle: "StepHandle") -> "bool | None":
    """Thaw a suspended step. Return True when handled (thawing a step that is not frozen is a no-op).

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_usage(handle: "StepHandle") -> "StepUsage | None":
    """Read the step's resource usage (CPU time, peak memory, whether OOM fired).

    Called once the main process has ended, before cleanup, for accounting
    and to tell an OutOfMemory end from an ordinary failure.

    firstresult.
    """


@hookspec(firstresult=True)
def crane_step_cleanup(handle: "StepHandle") -> "bool | None":
    """Kill whatever is left of the step and remove its isolation (cgroups, files).

    Called exactly once per launched step, last. Must be idempotent and must
    not raise for already-removed resources. Return True when handled.

    firstresult.
    """


@hookspec
def crane_step_reap(node: str, job_id: int, step_id: int) -> "bool | None":
    """Kill and remove whatever a step whose supervisor is gone left behind, found by its identity.

    Called by craned (not the supervisor: it is dead, and with it the step's
    handle) for a job directory whose supervisor died without a final status,
    before the node reports the step as ended — the controller frees the
    step's resources on that report, so nothing of it may still run. Every
    runtime plugin is asked (there is no handle to route by). Return True
    when this runtime had something of the step and nothing of it is left,
    False when some of it still runs (the node then keeps reporting the step
    as running and asks again at the next heartbeat), ``None`` when the step
    was never this runtime's. Must be idempotent and must not raise.
    ``step_id`` 0 is the batch step (the job's own cgroup); another number is a
    task step (only its part, below the job's).
    """


@hookspec
def crane_node_reconcile(node: str, known_jobs: frozenset[int]) -> None:
    """At craned's start: remove whatever this runtime left on ``node`` of jobs it no longer knows.

    ``known_jobs`` are the jobs that still have a job directory on the node (running, starting,
    or ended with a status not yet acknowledged; their leftovers go through
    ``crane_step_reap``). Anything of another job — e.g. a container pod whose node lost its
    state directory — is the runtime's to remove. Called once, before the node registers and
    takes launches; must not raise (errors are logged). Every runtime is asked.
    """


# --------------------------------------------------------------------------
# authentication and authorization (cranectld)
# --------------------------------------------------------------------------

@hookspec(firstresult=True)
def crane_authenticate(call: "CallInfo") -> "Identity | None":
    """Establish who is calling, from something the controller can verify.

    Called by cranectld for every RPC with the call's metadata and peer.
    Return an :class:`~crane_kernel.auth_types.Identity`, or ``None`` if this
    plugin cannot tell; when no plugin answers the call is rejected as
    unauthenticated. Never trust identity fields the client declares.

    firstresult.
    """


@hookspec(firstresult=True)
def crane_authorize(identity: "Identity", action: str, target: Any) -> "bool | None":
    """Decide whether ``identity`` may perform ``action`` on ``target``.

    ``action`` is a dotted name such as ``job.submit``, ``job.cancel``,
    ``job.modify``, ``job.query``, ``node.modify``, or one of the account
    database's ``account.*``, ``user.*``, ``qos.*`` (``add``, ``modify``,
    ``delete``, ``block``, ``query``) and ``txn.query`` (docs/accounts.md);
    ``target`` is the object acted upon (a job record, a node, an
    ``auth_types.AcctTarget``, ...) or ``None``. ``identity`` carries the
    admin level from the account database when the user is in it, and the
    accounts she coordinates (``identity.coordinated``, sub-accounts
    included). Return True to allow, False to deny, ``None`` for no opinion;
    when nobody answers the action is denied.

    firstresult.
    """


# --------------------------------------------------------------------------
# job submission filters (cranectld)
# --------------------------------------------------------------------------

@hookspec
def crane_job_submit(job: Any, identity: "Identity", cluster: "ClusterInfo") -> None:
    """Inspect, modify or reject a job at submission (like Slurm's Lua ``job_submit``).

    Called by cranectld for each submitted job after validation, before it is
    stored. ``job`` is the normalised submission as a mutable dict
    (``partition``, ``account``, ``node_num``, ``cpus_per_node``,
    ``mem_per_node``, ``time_limit``, ``gres``, ``nodelist``, ``exclude``,
    ``script``, ``env``, ...); change it in place to modify the job, or raise
    :class:`~crane_kernel.errors.JobRejected` with a one-line reason to reject it.
    ``cluster`` is a read-only :class:`~crane_kernel.clusterinfo.ClusterInfo`:
    the partitions (nodes, account rules, limits) and every node's configured
    capacity. Every registered filter runs, in configured order; the bundled
    ``submit_checks`` filter enforces partition accounts and rejects requests
    no node set of the partition could ever hold.
    """


# --------------------------------------------------------------------------
# controller policy: GRES devices and the job lifecycle (cranectld)
# --------------------------------------------------------------------------

@hookspec(firstresult=True)
def crane_gres_select(job: "SchedJob", node: "GresNode", free_devices: "Sequence[str]") -> "list[str] | None":
    """Choose the device files a starting job gets on one of its nodes.

    Called by cranectld, under its lock, once per node of a job that asks for
    GRES (``job.gres_per_node``, per node) when the job starts there, for nodes
    that have device files. ``node`` is a :class:`~crane_kernel.gres.GresNode`
    (device files per gres key, their env injector and index);
    ``free_devices`` lists the node's device files no running job holds, in
    configuration order. Return the chosen files (a subset of
    ``free_devices``; anything else is dropped with a warning), or ``None``
    for no opinion.

    firstresult: the gres plugins are asked in ``Plugins.Gres`` order; when
    none answers the job gets no device files (all of the node's are denied).
    """


@hookspec
def crane_gres_environment(devices: "Sequence[str]", node: "GresNode") -> "dict[str, str] | None":
    """Return the environment variables that tell a job which devices it got (``CUDA_VISIBLE_DEVICES`` ...).

    Called by cranectld when it builds a job's launch, for a job that got
    device files on its head node; ``devices`` are those files, ``node`` the
    head node's :class:`~crane_kernel.gres.GresNode`. Every gres plugin
    answers; the dicts are merged, a plugin earlier in ``Plugins.Gres``
    winning a conflict. The kernel adds ``CRANE_JOB_GRES_DEVICES`` itself.
    """


@hookspec(firstresult=True)
def crane_job_requeue(job: "SchedJob", reason: str) -> "bool | None":
    """Decide whether a running job that lost its node goes back to the queue (True) or ends (False).

    Called by cranectld, under its lock, when a job's node stops answering
    (``reason`` like ``"node cn01 down"``) or re-registers without the job
    (``"node lost the job"``). ``job`` is the controller's record: ``requeue``
    (``--requeue``), ``no_requeue`` (``--no-requeue``), ``cancel_requested``,
    ``epoch`` (how many times it was launched), ``user``, ``account``, ...
    A job not requeued ends ``Failed`` with exit code ``0:70`` (Crane Daemon
    Down); a requeued one becomes Pending with its priority and submit time.

    firstresult: the lifecycle plugins are asked in ``Plugins.Lifecycle``
    order; ``None`` from all of them means "do not requeue". The bundled
    ``standard`` plugin applies CraneSched's rule with ``CraneCtld.JobRequeue``
    and ``CraneCtld.MaxRequeueCount`` as its settings.
    """


# --------------------------------------------------------------------------
# events (fed from the events stream)
# --------------------------------------------------------------------------

@hookspec
def crane_event(event: JobEvent | StepEvent | NodeEvent) -> None:
    """Handle one event of the ``crane:{cluster}:events`` stream (runs in ``cplugind``).

    ``event`` is a typed model of :mod:`crane_kernel.events` (``event.kind`` says which:
    ``job.submitted``, ``job.ended``, ``node.down``, ...). Each event plugin is fed from its own
    consumer group, in stream order, one event at a time: delivery is at-least-once, so an
    implementation must be idempotent (``event.id`` is unique; ``event.seq`` orders events).
    Raising means "not handled": the host retries with backoff and, after repeated failures,
    moves the event to the plugin's dead-letter stream. A slow plugin delays only itself.
    """


# --------------------------------------------------------------------------
# accounting (job history: cranectld reads what the event plugins wrote)
# --------------------------------------------------------------------------

@hookspec(firstresult=True)
def crane_history_query(query: HistoryQuery) -> list[JobRecord] | None:
    """Ended jobs from the accounting store matching ``query`` (cacct, fair-share rebuild).

    Runs in ``cranectld``, which authorizes the caller first and narrows ``query.users`` for a
    user who may see only her own jobs. Return at most ``query.max_lines`` records (0 = no
    limit), ordered by job id, with ``steps`` filled when ``query.include_steps``; None when
    this plugin keeps no history.
    """
