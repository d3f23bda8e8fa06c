"""cbatch/cqueue latency with TLS+JWT on vs plaintext+JWT: two LocalClusters, 1,000 held jobs each, interleaved.

Run as root: ``.venv/bin/python tests/bench_tls.py`` (figures in docs/security.md, "Cost").
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import timeit

from crane_auth_rbac import jwt_tokens
from crane_tools.localcluster import LocalCluster

BIN = os.path.dirname(sys.executable)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds one command took (it must succeed)."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    return elapsed


def main(rounds: int = 25) -> None:
    """Start both clusters, measure, print medians and p90s, and the cost of one JWT verification."""
    clusters = {"tls": LocalCluster(nodes=1, cpus=1, cluster="bt", tls=True),
                "plain": LocalCluster(nodes=1, cpus=1, cluster="bp", tls=False)}
    try:
        envs = {}
        for name, c in clusters.items():
            c.start()
            envs[name] = {**c.env(), "CRANE_TOKEN": c.token("root", 0, "root")}
            client = c.client()
            client.submit(client.spec(wrap="true", hold=True), count=1000)
        for _ in range(3):
            for name in clusters:
                timed([f"{BIN}/cqueue"], envs[name])
        res: dict[str, dict[str, list[float]]] = {k: {"cbatch": [], "cqueue": []} for k in clusters}
        for _ in range(rounds):
            for name in clusters:
                res[name]["cbatch"].append(timed([f"{BIN}/cbatch", "-H", "--wrap", "true"], envs[name]))
                res[name]["cqueue"].append(timed([f"{BIN}/cqueue"], envs[name]))
        for name, runs in res.items():
            for m, v in runs.items():
                p90 = sorted(v)[int(len(v) * 0.9)]
                print(f"{name} {m}: median {statistics.median(v) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
        ring = jwt_tokens.read_keyring(clusters["tls"].cfg.key_file)
        token = jwt_tokens.mint(ring, "bt", 0, "root")
        n = 2000
        per = timeit.timeit(lambda: jwt_tokens.verify(ring, token, "bt"), number=n) / n
        print(f"jwt verify: {per * 1e6:.1f} us")
    finally:
        for c in clusters.values():
            c.stop()


if __name__ == "__main__":
    main()
