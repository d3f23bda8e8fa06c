"""cacct against a real cluster whose cranectld reads the job history (``Plugins.Accounting: sql``).

The history is written as cplugind will write it (the plugin's events half, ``crane_event`` with
typed events) into the default store, ``<CraneBaseDir>/acct/acct.db``, which cranectld found
through the ``CraneBaseDir`` the kernel gives accounting plugins.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import time

from crane_e2e import running_cluster


def test_cacct_shows_the_controllers_jobs_and_the_history() -> None:
    from crane_acct_sql import SqlEvents
    from crane_kernel.events import JobEvent, JobRecord

    me = pwd.getpwuid(os.getuid())
    with running_cluster(Plugins={"Accounting": "sql"}) as c:
        store = os.path.join(c.lc.base_dir, "acct")
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o700  # cranectld opened (and created) it
        w = SqlEvents()
        w.crane_plugin_configure(settings={"CraneBaseDir": c.lc.base_dir})
        try:
            now = time.time()
            w.crane_event(event=JobEvent(kind="job.ended", job_id=900001, seq=1, job=JobRecord(
                job_id=900001, name="old", user=me.pw_name, uid=me.pw_uid, gid=me.pw_gid, partition="debug",
                state="Failed", exit_code=2, submit_time=now - 7200, start_time=now - 7000, end_time=now - 3600,
                node_num=1, cpus=1.0, nodes=["cn01"])))
            live = c.cbatch("--wrap", "true")
            c.wait_done(live)
            a = c.run("cacct", "-o", "%j %t %e", "-N")
            assert a.returncode == 0, a.stderr
            rows = [line.split() for line in a.stdout.splitlines() if "." not in line.split()[0]]
            assert [str(live), "Completed", "0:0"] in rows and ["900001", "Failed", "2:0"] in rows
            steps = [line.split()[0] for line in a.stdout.splitlines() if line.split()[0].startswith("900001.")]
            assert steps == ["900001.batch"]
            data = json.loads(c.run("cacct", "--json", "-j", "900001").stdout)
            assert data["ok"] is True and [j["job_id"] for j in data["job_info_list"]] == [900001]
        finally:
            w.crane_plugin_shutdown()
