"""``--plot``: queue length and utilisation over time, drawn with matplotlib's Agg backend."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plot_series"]


def _bins(t: Sequence[float], values: Sequence[int], nbins: int) -> tuple[list[float], list[float], list[float]]:
    """Time-weighted mean and maximum of a step function per bin (keeps plots of 400k points light)."""
    t0, t1 = t[0], t[-1]
    width = (t1 - t0) / nbins if t1 > t0 else 1.0
    sums = [0.0] * nbins
    maxs = [0.0] * nbins
    for k in range(len(t) - 1):
        a, b, v = t[k], t[k + 1], values[k]
        if b <= a:
            continue
        ia = min(int((a - t0) / width), nbins - 1)
        ib = min(int((b - t0) / width), nbins - 1)
        for j in range(ia, ib + 1):
            lo = max(a, t0 + j * width)
            hi = min(b, t0 + (j + 1) * width)
            if hi > lo:
                sums[j] += v * (hi - lo)
            if v > maxs[j]:
                maxs[j] = v
    centres = [t0 + (j + 0.5) * width for j in range(nbins)]
    return centres, [s / width for s in sums], maxs


def plot_series(path: str, series: tuple[Sequence[float], Sequence[int], Sequence[int]], procs: int,
                title: str = "", nbins: int = 1000) -> None:
    """Write a PNG with pending-queue length and utilisation (busy processors / procs) over simulated days."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib (pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, q, busy = series
    if len(t) < 2:
        raise ValueError("nothing to plot: fewer than two events")
    days0 = t[0]
    x, qmean, qmax = _bins(t, q, nbins)
    _, bmean, _ = _bins(t, busy, nbins)
    xd = [(v - days0) / 86400.0 for v in x]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.fill_between(xd, qmax, step="mid", alpha=0.3, label="max")
    ax1.plot(xd, qmean, lw=0.8, label="mean")
    ax1.set_ylabel("pending jobs")
    ax1.legend(loc="upper right")
    ax2.plot(xd, [b / procs * 100.0 for b in bmean], lw=0.8)
    ax2.set_ylabel("utilisation %")
    ax2.set_ylim(0, 105)
    ax2.set_xlabel("simulated days")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
