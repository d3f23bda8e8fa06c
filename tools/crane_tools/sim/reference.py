"""A compact, stdlib-only, single-pool simulator: the yardstick the plugin-driven simulator is checked against.

It implements the literature's default model directly (no plugins, no views):
``P`` interchangeable processors, jobs sized in processors, estimates from the
requested time, run times capped at the estimate, completions processed before
arrivals at one instant, then one scheduling pass. Three policies:

* ``fifo``: start jobs strictly in queue order; stop at the first that does not fit.
* ``easy``: classic EASY. The blocked head job's *shadow time* is the earliest
  estimated end of running jobs at which enough processors are free (all jobs
  ending at that instant count); ``extra`` is what is spare at the shadow time
  beyond the head's need. A later job starts now if it fits now and either
  ends (by estimate) by the shadow time or uses at most ``extra`` processors
  (then ``extra`` shrinks by its size).
* ``conservative``: every queued job, in order, gets the earliest slot in a
  count-based availability profile that does not move any earlier job's slot;
  jobs whose slot is *now* start. Re-planned from scratch at every pass.

:func:`simulate` returns ``{job_id: start_time}``; the tests compare it with
the start times the plugin-driven :func:`crane_tools.sim.run_sim` produces.
"""

from __future__ import annotations

import gzip
import heapq
from bisect import bisect_right, insort

# (job_id, submit, run, size, estimate)
RefJob = tuple[int, int, int, int, int]


def read_jobs(path: str, procs: int | None = None) -> tuple[list[RefJob], int, int]:
    """Read an SWF file (plain or gzip) into ``(jobs, procs, skipped)`` under the default model."""
    opener = gzip.open if path.endswith(".gz") else open
    header_procs = 0
    raw = []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith(";"):
                if "MaxProcs:" in line:
                    header_procs = int(line.split(":", 1)[1].split()[0])
                continue
            f = line.split()
            if len(f) < 9:
                continue
            raw.append(f)
    p = procs or header_procs
    jobs: list[RefJob] = []
    skipped = 0
    for f in raw:
        run = int(float(f[3]))
        size = int(float(f[7]))
        if size <= 0:
            size = int(float(f[4]))
        est = int(float(f[8]))
        if est <= 0:
            est = run
        if run < 0 or size <= 0 or size > p:
            skipped += 1
            continue
        jobs.append((int(f[0]), int(float(f[1])), min(run, est), size, est))
    jobs.sort(key=lambda j: (j[1], j[0]))
    return jobs, p, skipped


def simulate(jobs: list[RefJob], procs: int, policy: str = "easy") -> dict[int, int]:
    """Replay ``jobs`` (sorted by submit time, then id) on ``procs`` processors; return start times."""
    if policy not in ("fifo", "easy", "conservative"):
        raise ValueError(f"unknown policy {policy!r}")
    starts: dict[int, int] = {}
    done: list[tuple[int, int, int]] = []  # heap of (actual end, job_id, size)
    ends: list[tuple[int, int, int]] = []  # sorted (estimated end, job_id, size) of running jobs
    queue: list[RefJob] = []
    free = procs
    i, n = 0, len(jobs)
    while i < n or done:
        t = jobs[i][1] if i < n else done[0][0]
        if done and done[0][0] < t:
            t = done[0][0]
        while done and done[0][0] == t:
            _, jid, size = heapq.heappop(done)
            free += size
            for k, e in enumerate(ends):
                if e[1] == jid:
                    del ends[k]
                    break
        while i < n and jobs[i][1] == t:
            queue.append(jobs[i])
            i += 1
        if not queue:
            continue
        if policy == "conservative":
            started = _conservative(queue, t, free, ends)
        else:
            k = 0
            while k < len(queue) and queue[k][3] <= free:
                free -= queue[k][3]
                k += 1
            started = queue[:k]
            if policy == "easy" and k < len(queue) and free > 0:
                for job in started:
                    insort(ends, (t + job[4], job[0], job[3]))
                backfilled = _easy_backfill(queue, k, t, free, ends)
                for job in started:
                    ends.remove((t + job[4], job[0], job[3]))
                started += backfilled
        if started:
            for jid, _sub, run, size, est in started:
                starts[jid] = t
                heapq.heappush(done, (t + run, jid, size))
                insort(ends, (t + est, jid, size))
            free = procs - sum(e[2] for e in ends)
            if len(started) == len(queue):
                queue = []
            else:
                ids = {job[0] for job in started}
                queue = [job for job in queue if job[0] not in ids]
    return starts


def _easy_backfill(queue: list[RefJob], k: int, now: int, free: int, ends: list) -> list[RefJob]:
    """Jobs after the blocked head ``queue[k]`` that EASY starts now."""
    need = queue[k][3]
    avail = free
    shadow = None
    for e, _jid, size in ends:
        if shadow is not None and e != shadow:
            break
        avail += size
        if shadow is None and avail >= need:
            shadow = e
    if shadow is None:  # cannot happen: the head fits an empty machine
        raise AssertionError("head job larger than the machine")
    extra = avail - need
    out = []
    for job in queue[k + 1:]:
        size = job[3]
        if size <= free:
            if now + job[4] <= shadow:
                out.append(job)
                free -= size
            elif size <= extra:
                out.append(job)
                free -= size
                extra -= size
            if free == 0:
                break
    return out


def _conservative(queue: list[RefJob], now: int, free: int, ends: list) -> list[RefJob]:
    """Plan every queued job in order on a count profile; return those whose slot is now."""
    times = [now]
    frees = [free]
    for e, _jid, size in ends:
        if e == times[-1]:
            frees[-1] += size
        else:
            times.append(e)
            frees.append(frees[-1] + size)
    out = []
    for job in queue:
        size, est = job[3], job[4]
        # earliest breakpoint from which the profile stays >= size for est seconds
        j = 0
        nb = len(times)
        while True:
            while frees[j] < size:
                j += 1
            start = times[j]
            end = start + est
            m = j + 1
            while m < nb and times[m] < end and frees[m] >= size:
                m += 1
            if m >= nb or times[m] >= end:
                break
            j = m
        if start == now:
            out.append(job)
        # carve [start, end) out of the profile
        if m < nb and times[m] == end:
            pass
        else:
            pos = bisect_right(times, end)
            times.insert(pos, end)
            frees.insert(pos, frees[pos - 1])
            nb += 1
        for x in range(j, bisect_right(times, end) - 1):
            frees[x] -= size
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m crane_tools.sim.reference TRACE [POLICY] [PROCS]``: print the mean wait."""
    import sys
    import time

    args = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    jobs, procs, skipped = read_jobs(args[0], int(args[2]) if len(args) > 2 else None)
    starts = simulate(jobs, procs, args[1] if len(args) > 1 else "easy")
    waits = [starts[j[0]] - j[1] for j in jobs]
    print(f"jobs={len(jobs)} skipped={skipped} mean_wait={sum(waits) / len(waits):.1f} "
          f"wall={time.perf_counter() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
