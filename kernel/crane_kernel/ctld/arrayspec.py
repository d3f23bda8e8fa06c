"""Array job indices: ``--array 0-15``, ``1-99:2``, ``1,3,5-7``, ``0-9999%10``.

:class:`TaskSet` keeps the indices of an array's tasks not yet started as a few ``(first, last,
step)`` ranges, so a 10,000-task array costs a few dozen bytes until its tasks start
(docs/arrays.md). Pure data: no controller state here.
"""

from __future__ import annotations

from dataclasses import dataclass

from crane_kernel.errors import JobRejected

MAX_ARRAY_INDEX = 4_000_000
"""The largest task index accepted (Slurm's MaxArraySize is configurable; ours is CraneCtld.MaxArrayTasks)."""


class TaskSet:
    """Sorted, distinct task indices as ``[first, last, step]`` ranges; pops the smallest first."""

    __slots__ = ("ranges", "count")

    def __init__(self, ranges: list[list[int]] | None = None) -> None:
        self.ranges = ranges or []
        self.count = sum((last - first) // step + 1 for first, last, step in self.ranges)

    @classmethod
    def from_indices(cls, indices: list[int]) -> "TaskSet":
        """Compress sorted distinct indices into ranges (runs of one stride)."""
        ranges: list[list[int]] = []
        i, n = 0, len(indices)
        while i < n:
            first = indices[i]
            if i + 1 == n:
                ranges.append([first, first, 1])
                break
            step = indices[i + 1] - first
            j = i + 1
            while j + 1 < n and indices[j + 1] - indices[j] == step:
                j += 1
            ranges.append([first, indices[j], step])
            i = j + 1
        return cls(ranges)

    @classmethod
    def parse_text(cls, text: str) -> "TaskSet":
        """The inverse of :meth:`text` (the journal's form); raises ValueError when malformed."""
        ranges = []
        for item in filter(None, text.split(",")):
            span, _, step = item.partition(":")
            first, _, last = span.partition("-")
            ranges.append([int(first), int(last or first), int(step or 1)])
        return cls(ranges)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, index: int) -> bool:
        return any(first <= index <= last and (index - first) % step == 0 for first, last, step in self.ranges)

    def first(self) -> int | None:
        """The smallest index, or None when empty."""
        return self.ranges[0][0] if self.ranges else None

    def pop_first(self) -> int | None:
        """Remove and return the smallest index (None when empty)."""
        if not self.ranges:
            return None
        head = self.ranges[0]
        index = head[0]
        head[0] += head[2]
        if head[0] > head[1]:
            self.ranges.pop(0)
        self.count -= 1
        return index

    def discard(self, index: int) -> bool:
        """Remove one index; True when it was there."""
        for pos, (first, last, step) in enumerate(self.ranges):
            if first <= index <= last and (index - first) % step == 0:
                parts = []
                if index > first:
                    parts.append([first, index - step, step])
                if index < last:
                    parts.append([index + step, last, step])
                self.ranges[pos:pos + 1] = parts
                self.count -= 1
                return True
        return False

    def clear(self) -> None:
        """Remove every index."""
        self.ranges = []
        self.count = 0

    def text(self) -> str:
        """``1-5,7,9-15:2`` (what users see inside ``A_[...]`` and what the journal keeps)."""
        out = []
        for first, last, step in self.ranges:
            out.append(str(first) if first == last else f"{first}-{last}" + (f":{step}" if step != 1 else ""))
        return ",".join(out)


@dataclass(frozen=True)
class ArraySpec:
    """A parsed ``--array``: the task indices and the ``%max`` of tasks running at once (0 = no limit)."""

    indices: tuple[int, ...]
    max_concurrent: int = 0

    def tasks(self) -> TaskSet:
        """The indices as a fresh :class:`TaskSet`."""
        return TaskSet.from_indices(list(self.indices))


def parse_array(text: str, max_tasks: int) -> ArraySpec:
    """Parse ``first[-last[:step]][,...][%max]``; raise JobRejected with a one-line reason."""
    text = (text or "").strip()
    if not text:
        raise JobRejected("--array is empty")
    body, pct, limit = text.partition("%")
    max_concurrent = 0
    if pct:
        if not limit.isdigit() or int(limit) < 1:
            raise JobRejected(f"--array {text[:40]!r}: %max must be a positive number")
        max_concurrent = int(limit)
    spans: list[tuple[int, int, int]] = []
    total = 0
    for item in body.split(","):
        span, colon, step_text = item.strip().partition(":")
        first_text, dash, last_text = span.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if dash else first
            step = int(step_text) if colon else 1
        except ValueError:
            raise JobRejected(f"--array {text[:40]!r}: {item.strip()[:20]!r} is not first[-last[:step]]") from None
        if colon and not dash:
            raise JobRejected(f"--array {text[:40]!r}: a step needs a range ({item.strip()[:20]!r})")
        if not 0 <= first <= last <= MAX_ARRAY_INDEX or step < 1:
            raise JobRejected(f"--array {text[:40]!r}: indices must be 0..{MAX_ARRAY_INDEX}, first <= last, step >= 1")
        total += (last - first) // step + 1
        if total > max_tasks:
            raise JobRejected(f"--array {text[:40]!r}: more than {max_tasks} tasks (CraneCtld.MaxArrayTasks)")
        spans.append((first, last, step))
    indices = sorted({i for first, last, step in spans for i in range(first, last + 1, step)})
    return ArraySpec(tuple(indices), max_concurrent)


def expand_array_pattern(pattern: str, array_job_id: int, task_id: int) -> str:
    """``%A`` -> the array's id, ``%a`` -> the task's index in an output pattern (``%%`` stays for the node)."""
    if "%" not in pattern:
        return pattern
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(str(array_job_id) if nxt == "A" else str(task_id) if nxt == "a" else ch + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
