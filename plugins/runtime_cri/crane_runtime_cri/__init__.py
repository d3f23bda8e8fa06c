"""cranesched runtime plugin ``cri``: container jobs as CRI (runtime.v1) pods on containerd.

The plugin claims only steps with a ``container`` (``cbatch --pod``, ``ccon run``); plain steps are
left to the next runtime (``cgroup``). See docs/containers.md.
"""
