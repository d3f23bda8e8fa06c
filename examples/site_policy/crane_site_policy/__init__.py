"""An example site policy for cranesched: one job filter, entry point ``crane.job_filter: site``.

What it does at submission (settings ``Plugins.Settings.site``, every key optional):

``DefaultAccount: {<unix group>: <account>}``
    a job that names no account (``cbatch -A``) gets the account of its submitter's primary Unix
    group (the job's gid); ``"*"`` is the fallback for any other group.
``MaxTimeLimit: {<partition>: <duration>}``
    the site's own ceiling per partition (``"1:00:00"``, ``"2-0"``, ``90m``; a YAML number is
    seconds). A longer request is refused with one line naming it, e.g.
    ``time limit 02:00:00 exceeds the site maximum of 01:00:00 for partition 'debug'``
    (``cbatch`` prints ``Job allocation failed: ...`` and exits 4); a job with no time limit gets
    the ceiling.
``Qos: {<unix group>: <qos>}``
    a job that names no QoS (``cbatch -q``) gets its group's QoS. This is the priority tweak: the
    QoS feeds the priority plugin (the bundled ``multifactor``'s QoS factor, ``WeightQoS`` and
    ``QoSPriority`` or the account database's QoS priority), so the one priority slot stays with
    the site's priority plugin and the two compose. ``"*"`` is the fallback.
``ExemptGroups: [<unix group>, ...]``
    groups the time ceiling does not apply to (operators).

List it before ``submit_checks`` (``Plugins.JobFilters: [site, submit_checks]``) so the checks see
the account it chose. It changes only ``account``, ``qos`` and ``time_limit``; the controller
re-validates what filters return.
"""

from __future__ import annotations

import grp
from collections.abc import Mapping
from typing import Any

from crane_common.units import UNLIMITED, config_duration, format_duration
from crane_kernel import hookimpl
from crane_kernel.errors import JobRejected

__all__ = ["SitePolicy"]

KNOWN = ("DefaultAccount", "MaxTimeLimit", "Qos", "ExemptGroups")


def _names(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v for v in value.values()):
        raise ValueError(f"{key} must map names to non-empty names")
    return {str(k): v for k, v in value.items()}


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return str(gid)


class SitePolicy:
    """Entry point ``crane.job_filter: site`` (see the module docstring)."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}
        self.qos: dict[str, str] = {}
        self.max_time: dict[str, int] = {}
        self.exempt: frozenset[str] = frozenset()

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Read the settings; a wrong one stops cranectld with one line naming it."""
        unknown = sorted(set(settings) - set(KNOWN))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(KNOWN)})")
        self.accounts = _names(settings.get("DefaultAccount"), "DefaultAccount")
        self.qos = _names(settings.get("Qos"), "Qos")
        limits = settings.get("MaxTimeLimit") or {}
        if not isinstance(limits, Mapping):
            raise ValueError("MaxTimeLimit must map partition names to durations")
        self.max_time = {}
        for part, value in limits.items():
            try:
                seconds = int(config_duration(value))
            except ValueError as exc:
                raise ValueError(f"MaxTimeLimit of partition {part!r}: {exc}") from None
            if seconds <= 0:
                raise ValueError(f"MaxTimeLimit of partition {part!r} must be positive")
            self.max_time[str(part)] = seconds
        exempt = settings.get("ExemptGroups") or []
        if not isinstance(exempt, list | tuple) or not all(isinstance(g, str) for g in exempt):
            raise ValueError("ExemptGroups must be a list of group names")
        self.exempt = frozenset(exempt)

    @hookimpl
    def crane_job_submit(self, job: dict[str, Any]) -> None:
        """Default account and QoS by Unix group; the site's time ceiling per partition."""
        group = _group_name(int(job.get("gid", -1)))
        if not job.get("account"):
            account = self.accounts.get(group) or self.accounts.get("*")
            if account:
                job["account"] = account
        if not job.get("qos"):
            qos = self.qos.get(group) or self.qos.get("*")
            if qos:
                job["qos"] = qos
        part = job.get("partition", "")
        limit = self.max_time.get(part)
        if limit is None or group in self.exempt:
            return
        asked = int(job.get("time_limit") or 0)
        if asked <= 0 or asked >= UNLIMITED:
            job["time_limit"] = limit
        elif asked > limit:
            raise JobRejected(f"time limit {format_duration(asked)} exceeds the site maximum of "
                              f"{format_duration(limit)} for partition '{part}'")
