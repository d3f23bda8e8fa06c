"""Mail notification types (``--mail-type``) and the shape of a recipient (``--mail-user``).

Shared by cbatch (which refuses a bad value before sending anything), the controller (which
checks again, since any client may call it) and the ``mail`` event plugin. Pure and cheap to
import (no ``re``): cbatch loads it only when a mail option is given.

Types, case-insensitive (Slurm's names; ``TIMELIMIT`` is upstream CraneSched's spelling of
``TIME_LIMIT``):

============== =================================================================
``BEGIN``      the job started
``END``        the job ended (any final state)
``FAIL``       the job failed: a non-zero exit code or a failed state
               (``Failed``, ``ExceedTimeLimit``, ``OutOfMemory``); sent *instead of*
               ``END`` when both are asked, as Slurm does
``REQUEUE``    the job went back to the queue
``TIME_LIMIT`` the job reached its time limit (in addition to END/FAIL)
``OOM``        the job ran out of memory (upstream CraneSched; in addition to END/FAIL)
``ALL``        ``BEGIN,END,FAIL,REQUEUE`` (Slurm's ALL)
``NONE``       no mail; only alone
============== =================================================================
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALL_TYPES",
    "MAIL_TYPES",
    "MAX_MAIL_TYPES",
    "MAX_MAIL_USER",
    "check_mail_user",
    "parse_mail_types",
]

MAIL_TYPES = ("BEGIN", "END", "FAIL", "REQUEUE", "TIME_LIMIT", "OOM")
"""The canonical types, in the order a normalised list keeps them."""
ALL_TYPES = ("BEGIN", "END", "FAIL", "REQUEUE")
"""What ``ALL`` stands for (Slurm's ALL, without its array and burst-buffer types)."""
_ALIASES = {"TIMELIMIT": ("TIME_LIMIT",), "ALL": ALL_TYPES, **{t: (t,) for t in MAIL_TYPES}}
ACCEPTED = (*MAIL_TYPES, "TIMELIMIT", "ALL", "NONE")
"""Every name ``--mail-type`` accepts, for error messages."""
MAX_MAIL_TYPES = 16
"""At most this many names in one request (longer lists are refused, not parsed)."""
MAX_MAIL_USER = 254
"""The longest recipient address (RFC 5321's path limit less the angle brackets)."""

# RFC 5322 "atext" plus the dot: what an unquoted local part may hold (no quotes, no spaces).
_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")
_DOMAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def parse_mail_types(values: str | Iterable[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated types of ``values`` (a comma-separated string or a list of them).

    ``()`` for ``NONE`` (or nothing); raises ``ValueError`` with a one-line message for an
    unknown name, ``NONE`` with others, or more than :data:`MAX_MAIL_TYPES` names.
    """
    items = [values] if isinstance(values, str) else list(values)[: MAX_MAIL_TYPES + 1]
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("mail types must be text")
        names.extend(p.strip().upper() for p in item[:1024].split(",") if p.strip())
        if len(names) > MAX_MAIL_TYPES:
            raise ValueError(f"at most {MAX_MAIL_TYPES} mail types")
    found: set[str] = set()
    for name in names:
        if name == "NONE":
            if len(names) > 1:
                raise ValueError("mail type NONE cannot be combined with other types")
            return ()
        expanded = _ALIASES.get(name)
        if expanded is None:
            shown = name if len(name) <= 32 and name.isprintable() else name[:32].encode("unicode_escape").decode()
            raise ValueError(f"unknown mail type {shown!r} (expected {', '.join(ACCEPTED)})")
        found.update(expanded)
    return tuple(t for t in MAIL_TYPES if t in found)


def check_mail_user(value: object) -> str:
    """``value`` if it is one recipient: ``user`` or ``local@domain``; else ``ValueError`` (one line).

    At most :data:`MAX_MAIL_USER` characters, ASCII, no control characters, spaces, quotes,
    angle brackets, commas or semicolons (so neither a header injection nor a second
    recipient), one ``@`` at most with a non-empty local part and a dotted-name domain.
    A bare user name is completed by the mail plugin's ``MailDomain``.
    """
    if not isinstance(value, str):
        raise ValueError("the mail user must be text")
    if not value:
        raise ValueError("the mail user is empty")
    if len(value) > MAX_MAIL_USER:
        raise ValueError(f"the mail user is longer than {MAX_MAIL_USER} characters")
    local, at, domain = value.partition("@")
    if not local or any(c not in _LOCAL for c in local) or local.startswith(".") or local.endswith(".") \
            or ".." in local:
        raise ValueError("the mail user must be one address, user or user@domain "
                         "(no spaces, quotes, commas or control characters)")
    if at:
        labels = domain.split(".")
        if not domain or any(c not in _DOMAIN for c in domain) or not all(labels) \
                or any(lb.startswith("-") or lb.endswith("-") or len(lb) > 63 for lb in labels):
            raise ValueError("the mail user's domain is not a host name (user@example.org)")
    return value
