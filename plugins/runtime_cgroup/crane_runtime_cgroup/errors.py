"""The plugin's internal error type."""

from __future__ import annotations


class CgroupError(Exception):
    """A cgroup could not be detected, created, configured or removed; the message is one line for the user."""
