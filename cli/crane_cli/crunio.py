"""crun's local I/O: where task output goes (``-o``/``-e``/``-l``) and what feeds the step's stdin (``-i``).

An output spec is ``all`` (every task, to crun's own stdout/stderr), ``none``, a task id
(only that task), or a local file pattern: ``%j`` job id, ``%s`` step id, ``%J`` ``job.step``,
``%u`` user name, ``%x`` job name, ``%t`` task id (one file per task), ``%%`` a ``%``. A file is
opened (truncated) when the first output for it arrives. Data is written as it comes (no
buffering); ``--label`` prefixes each line with ``<task>: `` (per task and stream, so a line
split over two messages gets one prefix).
"""

from __future__ import annotations

import os
import threading

from crane_cli.errors import arg_error
from crane_cli.interactive import STDIN_CHUNK, write_all


def check_spec(flag: str, value: str | None, default: str = "all") -> str:
    """Normalise an ``-o``/``-e``/``-i`` value (``default`` when absent; exit 2 if empty)."""
    if value is None:
        return default
    if not value.strip():
        raise arg_error(f"crun: {flag} needs a value: all, none, a task id or a file")
    low = value.strip().lower()
    return low if low in ("all", "none") else value


def expand_pattern(pattern: str, job_id: int, step_id: int, user: str, name: str, task: int | None) -> str:
    """Expand ``%%`` ``%J`` ``%j`` ``%s`` ``%u`` ``%x`` ``%t`` in ``pattern`` (other ``%X`` stay as written)."""
    subst = {"%": "%", "J": f"{job_id}.{step_id}", "j": str(job_id), "s": str(step_id), "u": user, "x": name}
    if task is not None:
        subst["t"] = str(task)
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%" and i + 1 < len(pattern) and pattern[i + 1] in subst:
            out.append(subst[pattern[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class Output:
    """Routes ``TaskOutput`` messages to fds and files per the ``-o``/``-e`` specs."""

    def __init__(self, out_spec: str, err_spec: str, label: bool, user: str, name: str,
                 err_given: bool = True) -> None:
        # srun's rule: -o FILE without -e sends stderr to the same file
        if not err_given and out_spec not in ("all", "none") and not out_spec.isdigit():
            err_spec = out_spec
        self.specs = {1: out_spec, 2: err_spec}
        self.label = label
        self.user, self.name = user, name
        self.job_id = self.step_id = 0
        self.files: dict[str, int] = {}
        self.at_line_start: dict[tuple[int, int], bool] = {}
        self.broken_pipe = False

    def set_ids(self, job_id: int, step_id: int) -> None:
        """The ids the file patterns name (from ``pending``/``allocated``)."""
        self.job_id, self.step_id = job_id, step_id

    def _target(self, task: int, fd: int) -> int | None:
        spec = self.specs.get(fd, "all")
        if spec == "none":
            return None
        if spec == "all":
            return fd
        if spec.isdigit():
            return fd if int(spec) == task else None
        path = expand_pattern(spec, self.job_id, self.step_id, self.user, self.name, task)
        out = self.files.get(path)
        if out is None:
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                from crane_cli.errors import CliError

                raise CliError(f"crun: error: cannot open {path}: {exc.strerror or exc}", 1) from None
            self.files[path] = out
        return out

    def write(self, task: int, fd: int, data: bytes) -> None:
        """Write one message's data (prefixed per line with ``--label``)."""
        target = self._target(task, 2 if fd == 2 else 1)
        if target is None or not data:
            return
        if self.label:
            data = self._labelled(task, target, data)
        try:
            write_all(target, data)
        except BrokenPipeError:
            if target in (1, 2):
                self.specs[2 if target == 2 else 1] = "none"
                self.broken_pipe = True
            else:
                raise

    def _labelled(self, task: int, target: int, data: bytes) -> bytes:
        key = (task, target)
        prefix = f"{task}: ".encode()
        start = self.at_line_start.get(key, True)
        lines = data.split(b"\n")
        parts = []
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and not line:
                break
            parts.append((prefix if (start or i > 0) else b"") + line + (b"" if last else b"\n"))
        self.at_line_start[key] = data.endswith(b"\n")
        return b"".join(parts)

    def close(self) -> None:
        """Close the output files."""
        for fd in self.files.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.files.clear()


def stdin_target(spec: str) -> tuple[str, str | None]:
    """``-i`` -> (``StepStart.stdin_target``, local file to send or None)."""
    if spec == "all" or spec == "none":
        return spec, None
    if spec.isdigit():
        return str(int(spec)), None
    return "0", spec


def open_input(path: str | None) -> int:
    """The fd to read stdin data from: ``path`` (exit 2 if unreadable) or crun's stdin."""
    if path is None:
        return 0
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise arg_error(f"crun: cannot read {path}: {exc.strerror or exc}") from None


def start_stdin(stream: object, fd: int) -> threading.Thread:
    """A thread sending ``fd``'s data as ``stdin`` messages, then ``stdin_eof``."""

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, STDIN_CHUNK)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                stream.send(stdin_eof=True)  # type: ignore[attr-defined]
                return
            stream.send_stdin(data)  # type: ignore[attr-defined]

    thread = threading.Thread(target=pump, name="crun-stdin", daemon=True)
    thread.start()
    return thread
