"""Slurm's output forms: state names and codes, times, memory sizes, and ``%[.][width]X`` format strings.

Everything here is pure (no grpc): the wrappers build rows from our reply messages and lay
them out with these functions, so the unit tests can compare with Slurm's exact forms.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crane_cli.errors import EXIT_OK

# Our JobStatus numbers (crane.proto) -> Slurm's state name and its compact code.
SLURM_STATES: dict[int, tuple[str, str]] = {
    0: ("PENDING", "PD"), 1: ("RUNNING", "R"), 2: ("COMPLETED", "CD"), 3: ("FAILED", "F"),
    4: ("TIMEOUT", "TO"), 5: ("CANCELLED", "CA"), 6: ("OUT_OF_MEMORY", "OOM"), 7: ("CONFIGURING", "CF"),
    8: ("CONFIGURING", "CF"), 9: ("COMPLETING", "CG"), 10: ("SUSPENDED", "S"), 11: ("DEADLINE", "DL"),
}

# Slurm's state names and codes (what -t/--states and -s/--state accept) -> our JobStatus numbers.
STATE_FILTERS: dict[str, tuple[int, ...]] = {}
for _num, (_name, _code) in SLURM_STATES.items():
    for _key in (_name, _code):
        STATE_FILTERS[_key] = (*STATE_FILTERS.get(_key, ()), _num)
STATE_FILTERS.update({"CANCELED": (5,), "OOM": (6,), "ALL": tuple(SLURM_STATES)})
SLURM_STATE_WORDS = ("PENDING(PD) RUNNING(R) SUSPENDED(S) COMPLETING(CG) COMPLETED(CD) CONFIGURING(CF) "
                     "CANCELLED(CA) FAILED(F) TIMEOUT(TO) OUT_OF_MEMORY(OOM) DEADLINE(DL) ALL")

# Our pending reasons -> Slurm's (others are shown as they are)
REASONS = {"Resource": "Resources", "Held": "JobHeldUser", "": "None"}

UNLIMITED_SECONDS = 36525 * 86400  # crane_common.units.UNLIMITED: limits at or above are "unlimited"


def state_name(status: int) -> str:
    """Slurm's state name (``RUNNING``) for our JobStatus number."""
    return SLURM_STATES.get(status, ("UNKNOWN", "?"))[0]


def state_code(status: int) -> str:
    """Slurm's compact state code (``R``) for our JobStatus number."""
    return SLURM_STATES.get(status, ("UNKNOWN", "?"))[1]


def parse_states(prog: str, values: Sequence[str]) -> list[int]:
    """``-t PD,R`` / ``--state=running`` -> our JobStatus numbers (raises the usage error, exit 2)."""
    from crane_slurm.slurmopts import usage

    out: list[int] = []
    for value in values:
        for item in (p.strip() for p in value.split(",")):
            if not item:
                continue
            nums = STATE_FILTERS.get(item.upper())
            if nums is None:
                raise usage(prog, f"Invalid job state specified: {item} (valid: {SLURM_STATE_WORDS})")
            out.extend(n for n in nums if n not in out)
    return out


def reason(text: str) -> str:
    """Slurm's name for our pending reason."""
    return REASONS.get(text, text)


def squeue_time(seconds: float) -> str:
    """squeue's times (TIME, TIME_LIMIT): ``M:SS``, ``H:MM:SS``, ``D-HH:MM:SS``."""
    s = max(int(seconds), 0)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


def squeue_limit(seconds: int) -> str:
    """squeue's TIME_LIMIT: ``UNLIMITED`` for none, else :func:`squeue_time`."""
    if seconds <= 0 or seconds >= UNLIMITED_SECONDS:
        return "UNLIMITED"
    return squeue_time(seconds)


def sinfo_limit(seconds: int) -> str:
    """sinfo's TIMELIMIT: ``infinite`` for none, else :func:`squeue_time`."""
    if seconds <= 0 or seconds >= UNLIMITED_SECONDS:
        return "infinite"
    return squeue_time(seconds)


def sacct_duration(seconds: float) -> str:
    """sacct's Elapsed/Timelimit: ``HH:MM:SS`` or ``D-HH:MM:SS`` (our own duration form, the same)."""
    from crane_common.units import format_duration

    return format_duration(seconds)


def timestamp(ts: float, unset: str = "N/A") -> str:
    """Slurm's timestamps: ``2024-01-02T15:04:05`` (local time); ``unset`` for none."""
    if not ts or ts <= 0:
        return unset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))


def memory_mb(nbytes: int) -> str:
    """Slurm's memory sizes: ``0``, ``512M``, ``4G``, ``1.50G`` (whole mebibytes, binary units)."""
    mb = int(nbytes) >> 20
    if mb <= 0:
        return "0"
    for unit, size in (("T", 1 << 20), ("G", 1 << 10)):
        if mb >= size:
            value = mb / size
            return f"{int(value)}{unit}" if value == int(value) else f"{value:.2f}{unit}"
    return f"{mb}M"


def exit_code(raw: int) -> str:
    """Slurm's ExitCode ``<code>:<signal>`` for our raw exit code (0-255 status, 256+signal, 320+ ours).

    Our own codes (a job cancelled or past its time limit: terminated with SIGTERM) show signal 15;
    the others (spawn failure, lost node ...) exit code 1.
    """
    from crane_common.states import CRANE_CODE_BASE, EC_EXCEED_TIME_LIMIT, EC_TERMINATED, SIGNAL_BASE

    if raw < SIGNAL_BASE:
        return f"{raw}:0"
    if raw < CRANE_CODE_BASE:
        return f"0:{raw - SIGNAL_BASE}"
    if raw in (EC_TERMINATED, EC_EXCEED_TIME_LIMIT):
        return "0:15"
    return "1:0"


def shell_exit(raw: int) -> int:
    """The exit status a shell would see for our raw exit code (``sbatch --wait``'s own)."""
    from crane_common.states import CRANE_CODE_BASE, EC_EXCEED_TIME_LIMIT, EC_TERMINATED, SIGNAL_BASE

    if raw < SIGNAL_BASE:
        return raw
    if raw < CRANE_CODE_BASE:
        return 128 + raw - SIGNAL_BASE
    return 128 + 15 if raw in (EC_TERMINATED, EC_EXCEED_TIME_LIMIT) else 1


# -- %[.][width]X format strings ---------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One ``%`` item of a Slurm format: its letter, width (0: natural) and right alignment."""

    letter: str
    width: int
    right: bool


def parse_format(fmt: str, letters: Sequence[str] | dict) -> list[str | Spec]:
    """Split a Slurm ``-o`` format into literal text and :class:`Spec` items (ValueError if bad).

    Slurm's rule: ``%`` then an optional ``.`` (right-justify), optional width, one letter;
    ``%%`` is a percent sign. An unknown letter is an error naming it.
    """
    out: list[str | Spec] = []
    text: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            text.append(ch)
            i += 1
            continue
        j = i + 1
        if j < len(fmt) and fmt[j] == "%":
            text.append("%")
            i = j + 1
            continue
        right = j < len(fmt) and fmt[j] == "."
        if right:
            j += 1
        k = j
        while k < len(fmt) and fmt[k].isdigit():
            k += 1
        if k >= len(fmt):
            raise ValueError(f"invalid format {fmt!r}: '%' at the end")
        letter = fmt[k]
        if letter not in letters:
            raise ValueError(f"invalid field specification '%{letter}' in format {fmt!r}")
        if text:
            out.append("".join(text))
            text = []
        out.append(Spec(letter, int(fmt[j:k]) if k > j else 0, right))
        i = k + 1
    if text:
        out.append("".join(text))
    if not any(isinstance(x, Spec) for x in out):
        raise ValueError(f"invalid format {fmt!r}: no field specification")
    return out


def cell(value: str, width: int, right: bool) -> str:
    """A value in a field of ``width`` (cut to it, as Slurm does; 0: as it is)."""
    if width <= 0:
        return value
    value = value[:width]
    return value.rjust(width) if right else value.ljust(width)


def render(layout: Sequence[str | Spec], headers: dict[str, str] | None, rows: Sequence[object],
           get: Callable[[object, str], str]) -> list[str]:
    """The lines for ``rows`` laid out after ``layout`` (a header line first unless ``headers`` is None).

    ``get(row, letter)`` gives a row's value for a letter; ``headers[letter]`` its title.
    """
    lines = []
    if headers is not None:
        lines.append("".join(x if isinstance(x, str) else cell(headers[x.letter], x.width, x.right)
                             for x in layout))
    for row in rows:
        lines.append("".join(x if isinstance(x, str) else cell(get(row, x.letter), x.width, x.right)
                             for x in layout))
    return lines


def show_lines(report: Callable[[], list[str]], iterate: int | None) -> int:
    """Print ``report()``'s lines once, or every ``iterate`` seconds (each time after a local-time line, with
    an empty line between reports, as squeue and sinfo ``-i`` do) until interrupted; the exit code."""
    while True:
        out = report()
        if iterate is not None:
            out.insert(0, time.strftime("%a %b %d %H:%M:%S %Y"))
        if out:
            sys.stdout.write("\n".join(out) + "\n")
        if iterate is None:
            return EXIT_OK
        sys.stdout.write("\n")
        sys.stdout.flush()
        time.sleep(iterate)
