"""The bundled event plugins hosted by the real ``cplugind``: history, mail and metrics end to end.

Real cranectld, craned and cplugind processes on a closed bus; the plugins are loaded by name from
their entry points, fed from the events stream through their own consumer groups:

* ``sql`` writes the job history; once the controller has forgotten ended jobs, ``cacct`` and
  ``ceff`` still show them (read back through ``Plugins.Accounting: sql``); ``kill -9`` of cplugind
  in the middle of a stream of jobs loses no record and duplicates none;
* ``mail`` sends the mails users asked for through a real SMTP server (aiosmtpd), its rq queue on
  the cluster's own Redis under cplugind's ACL user;
* ``prometheus`` serves ``/metrics`` from inside cplugind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
import urllib.request

import pytest
from crane_e2e import running_cluster

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s")


def _history_rows(base_dir: str) -> dict[int, tuple[str, int]]:
    """job id -> (state, exit code) as the sql plugin stored them (read-only)."""
    db = sqlite3.connect(f"file:{os.path.join(base_dir, 'acct', 'acct.db')}?mode=ro", uri=True)
    try:
        return {jid: (state, code) for jid, state, code in db.execute("SELECT job_id, state, exit_code FROM jobs")}
    finally:
        db.close()


def test_history_outlives_the_controller_and_survives_kill_9_of_cplugind():
    settings = {"Plugins": {"Events": ["sql"], "Accounting": "sql"},
                "CraneCtld": {"FinishedJobRetention": 1}}
    with running_cluster(nodes=2, cpus=2, **settings) as c:
        ok = c.cbatch("-J", "fine", "--wrap", "true")
        bad = c.cbatch("-J", "broken", "--wrap", "exit 3")
        for jid in (ok, bad):
            c.wait_done(jid)
        # the controller forgets them after FinishedJobRetention; cqueue -t all no longer has them ...
        _until(lambda: str(ok) not in c.run("cqueue", "-t", "all", "-N").stdout, what="controller forgetting")
        # ... cacct still does, from the history cplugind wrote
        out = _until(lambda: (lambda r: r if str(bad) in r.stdout else None)(c.run("cacct", "-o", "%j %n %t %e", "-N")),
                     what="history rows")
        rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
        assert rows[str(ok)] == ["fine", "Completed", "0:0"] and rows[str(bad)] == ["broken", "Failed", "3:0"]
        eff = c.run("ceff", str(ok))
        assert eff.returncode == 0 and "CPU Efficiency" in eff.stdout, eff.stdout + eff.stderr

        # kill -9 of cplugind in the middle of a stream of jobs: every job ends up once, ended
        lc = c.lc
        ids = c.client.submit(c.client.spec(wrap="true", cwd="/tmp", output="/dev/null"), count=150)
        _until(lambda: len(_history_rows(lc.base_dir)) > 20, what="some rows before the kill")
        lc.kill_plugind(signal.SIGKILL)
        lc.start_plugind()
        rows = _until(lambda: (lambda r: r if all(r.get(i, ("",))[0] == "Completed" for i in ids) else None)(
            _history_rows(lc.base_dir)), timeout=90, what="every job's end in the history")
        assert len(rows) == len(set(rows)) == len(ids) + 2  # one row per job: nothing lost, nothing twice
        status = json.loads(c.run("cplugind", "--status", "--json").stdout)
        assert any(p.get("name", p.get("plugin")) == "sql" for p in (status if isinstance(status, list)
                                                                      else status.get("plugins", [])))


def test_mail_through_cplugind_and_a_real_smtp_server(tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list = []

    class Keep(Message):
        def handle_message(self, message):  # noqa: D102 - aiosmtpd's hook
            received.append(message)

    port = _free_port()
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        mail = {"SmtpHost": "127.0.0.1", "SmtpPort": port, "From": "crane@localhost", "RetryIntervals": [1, 2]}
        with running_cluster(nodes=1, cpus=2, Plugins={"Events": ["mail"], "Settings": {"mail": mail}}) as c:
            # no RedisUrl given: the plugin's rq queue is on the cluster's own bus, as cplugind's ACL user
            jid = c.cbatch("--mail-type", "END,FAIL", "--mail-user", "alice@example.org", "--wrap", "exit 2")
            c.wait_done(jid)
            _until(lambda: received, timeout=60, what="the mail")
            msg = received[0]
            assert msg["To"] == "alice@example.org" and str(jid) in msg["Subject"]
            assert "FAIL" in msg["Subject"].upper() or "Failed" in msg["Subject"]
    finally:
        smtp.stop()


def test_metrics_served_from_inside_cplugind():
    port = _free_port()
    prom = {"ListenPort": port, "PollInterval": 0.5}
    with running_cluster(nodes=2, cpus=2, Plugins={"Events": ["prometheus"], "Settings": {"prometheus": prom}}) as c:
        jid = c.cbatch("--wrap", "true")
        c.wait_done(jid)

        def scrape() -> str | None:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return None
            return text if "crane_jobs_ended_total" in text and "crane_nodes" in text else None

        text = _until(scrape, timeout=30, what="a scrape with job and node metrics")
        assert 'crane_jobs_ended_total{state="Completed"}' in text or "crane_jobs_ended_total" in text
