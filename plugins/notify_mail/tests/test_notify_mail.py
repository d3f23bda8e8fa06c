"""The ``mail`` event plugin against a real local SMTP server (aiosmtpd) and a private redis-server.

The plugin is driven by calling its ``crane_event`` with typed events of ``crane_kernel.events``, as
cplugind does; the mails are sent by rq workers: in-process (``SimpleWorker``, burst) where the
test is about the content, the plugin's own worker process where it is about delivery.
"""

from __future__ import annotations

import time

import pytest
from crane_kernel import plugins
from crane_kernel.errors import PluginError
from crane_kernel.events import JobEvent, JobRecord
from crane_notify_mail import MailNotifier, rq_job_id

T0 = 1_700_000_000.0
# the SMTP server of the login test takes AUTH without TLS (on 127.0.0.1): aiosmtpd warns about it
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def record(state="Running", mail=("END",), exit_code=0, mail_user="alice@example.org", **kw) -> JobRecord:
    base = {"job_id": 42, "name": "train", "user": "alice", "account": "phys", "partition": "cpu", "state": state,
            "exit_code": exit_code, "submit_time": T0, "start_time": T0 + 10, "time_limit": 3600, "node_num": 2,
            "cpus": 8, "nodes": ["cn01", "cn02"], "cwd": "/home/alice/run", "mail_type": list(mail),
            "mail_user": mail_user}
    if state not in ("Pending", "Running"):
        base["end_time"] = T0 + 130
    base.update(kw)
    return JobRecord(**base)


def event(kind, seq=1, **kw) -> JobEvent:
    job = record(**kw)
    return JobEvent(kind=kind, seq=seq, time=job.end_time or job.start_time, job_id=job.job_id, job=job)


def configure(redis_url, smtp_port, **extra) -> MailNotifier:
    plugin = MailNotifier()
    settings = {"RedisUrl": redis_url, "SmtpHost": "127.0.0.1", "SmtpPort": smtp_port, "From": "crane@hpc.example",
                "Cluster": "demo", "StartWorker": False, "RetryIntervals": [1], "Retries": 30}
    settings.update(extra)
    plugin.crane_plugin_configure(settings=settings)
    return plugin


def drain(plugin: MailNotifier) -> None:
    """Run every queued send in this process (an rq worker in burst mode, no fork)."""
    from rq import SimpleWorker

    SimpleWorker([plugin.queue], connection=plugin.redis).work(burst=True)


@pytest.fixture
def mailer(redis_url, smtp):
    plugin = configure(redis_url, smtp.port)
    yield plugin
    plugin.crane_plugin_shutdown()


def parts(msg):
    """The plain-text and HTML parts, with the wire's CRLF line ends as newlines."""
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    return text, html


@pytest.mark.parametrize("kind,fields,types,subject", [
    ("job.started", {"mail": ["BEGIN"]}, ["BEGIN"], "[demo] Job 42 (train) Began on cn[01-02]"),
    ("job.ended", {"state": "Completed", "mail": ["END"]}, ["END"],
     "[demo] Job 42 (train) Ended: Completed, exit code 0:0, run time 00:02:00"),
    ("job.ended", {"state": "Failed", "exit_code": 3, "mail": ["END", "FAIL"]}, ["FAIL"],  # FAIL instead of END
     "[demo] Job 42 (train) Failed: Failed, exit code 3:0, run time 00:02:00"),
    ("job.ended", {"state": "ExceedTimeLimit", "exit_code": 256 + 9, "mail": ["TIME_LIMIT"]}, ["TIME_LIMIT"],
     "[demo] Job 42 (train) Reached its time limit: ExceedTimeLimit, exit code 0:9, run time 00:02:00"),
])
def test_mail_arrives_with_subject_recipient_and_both_parts(mailer, smtp, kind, fields, types, subject):
    mailer.crane_event(event=event(kind, **fields))
    assert [j.id for j in mailer.queue.get_jobs()] == [f"crane-mail-demo-42-{t.lower()}-1" for t in types]
    drain(mailer)
    (msg,) = smtp.inbox.wait(1)
    assert msg["Subject"] == subject
    assert msg["To"] == "alice@example.org" and msg["From"] == "crane@hpc.example"
    assert smtp.inbox.envelopes[0] == ("crane@hpc.example", ["alice@example.org"])
    assert msg["Message-ID"] == f"<crane-mail-demo-42-{types[0].lower()}-1@hpc.example>"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    state = fields.get("state", "Running")
    for part in (text, html):
        assert "42" in part and "train" in part and "alice" in part and state in part and "cn[01-02]" in part
    assert "<table" in html and "<" not in text


def test_time_limit_end_sends_both_when_both_asked(mailer, smtp):
    mailer.crane_event(event=event("job.ended", state="ExceedTimeLimit", exit_code=256 + 9,
                                   mail=["END", "TIME_LIMIT"]))
    drain(mailer)
    subjects = sorted(m["Subject"].split(")")[1].split(":")[0].strip() for m in smtp.inbox.wait(2))
    assert subjects == ["Ended", "Reached its time limit"]


def test_all_and_alias_spellings(mailer, smtp):
    mailer.crane_event(event=event("job.requeued", state="Pending", mail=["ALL"], start_time=0))
    mailer.crane_event(event=event("job.ended", seq=2, state="ExceedTimeLimit", mail=["TIMELIMIT"]))
    drain(mailer)
    subjects = sorted(m["Subject"] for m in smtp.inbox.wait(2))
    assert "Requeued" in subjects[1] and "Reached its time limit" in subjects[0]


def test_bare_user_name_gets_the_mail_domain(redis_url, smtp):
    plugin = configure(redis_url, smtp.port, MailDomain="hpc.example")
    try:
        plugin.crane_event(event=event("job.started", mail=["BEGIN"], mail_user=""))
        drain(plugin)
        (msg,) = smtp.inbox.wait(1)
        assert msg["To"] == "alice@hpc.example"
    finally:
        plugin.crane_plugin_shutdown()


@pytest.mark.parametrize("kind,fields", [
    ("job.started", {"mail": ["END"]}),                                  # BEGIN not asked
    ("job.ended", {"state": "Completed", "mail": ["FAIL"]}),             # it did not fail
    ("job.ended", {"state": "Completed", "mail": ["BEGIN", "REQUEUE"]}),
    ("job.requeued", {"state": "Pending", "mail": ["END", "FAIL"]}),
    ("job.ended", {"state": "Completed", "mail": []}),                   # no mail asked: the common case
    ("job.submitted", {"state": "Pending", "mail": ["ALL"]}),            # not a mail event
])
def test_type_not_asked_sends_nothing(mailer, smtp, kind, fields):
    mailer.crane_event(event=event(kind, **fields))
    assert mailer.queue.count == 0
    drain(mailer)
    time.sleep(0.2)
    assert smtp.inbox.messages == []


def test_node_and_step_events_are_ignored(mailer):
    from crane_kernel.events import NodeEvent, StepEvent

    mailer.crane_event(event=NodeEvent(kind="node.down", node="cn01"))
    mailer.crane_event(event=StepEvent(kind="step.ended", job_id=42))
    assert mailer.queue.count == 0


def test_redelivered_event_sends_one_mail(mailer, smtp):
    ev = event("job.ended", state="Completed", mail=["END"], seq=7)
    again = JobEvent.model_validate_json(ev.model_dump_json())  # what a redelivery decodes: same id and seq
    mailer.crane_event(event=ev)
    mailer.crane_event(event=again)
    assert mailer.queue.count == 1
    drain(mailer)
    mailer.crane_event(event=again)  # delivered again after the mail went out: still recognised
    assert mailer.queue.count == 0
    drain(mailer)
    time.sleep(0.2)
    assert len(smtp.inbox.wait(1)) == 1


def test_each_start_of_a_requeued_job_is_its_own_mail(mailer, smtp):
    mailer.crane_event(event=event("job.started", mail=["BEGIN"], seq=3))
    mailer.crane_event(event=event("job.started", mail=["BEGIN"], seq=9))
    drain(mailer)
    assert len(smtp.inbox.wait(2)) == 2


def test_event_without_seq_is_identified_by_its_id():
    ev = event("job.started", mail=["BEGIN"], seq=0)
    assert rq_job_id("c1", ev, "BEGIN") == rq_job_id("c1", JobEvent.model_validate_json(ev.model_dump_json()), "BEGIN")
    assert rq_job_id("c1", ev, "BEGIN") != rq_job_id("c1", event("job.started", mail=["BEGIN"], seq=0), "BEGIN")
    assert rq_job_id("my cluster!", event("job.started", seq=5), "TIME_LIMIT") == \
        "crane-mail-my_cluster_-42-time_limit-5"


def test_smtp_outage_delays_but_never_loses(redis_url, smtp_down):
    """The SMTP server is down while the events are handled; the mails arrive once it is back (rq retries)."""
    server = smtp_down  # not started: connections to its port are refused
    plugin = configure(redis_url, server.port, StartWorker=True)
    try:
        t = time.monotonic()
        plugin.crane_event(event=event("job.started", mail=["BEGIN", "END"], seq=1))
        plugin.crane_event(event=event("job.ended", state="Completed", mail=["BEGIN", "END"], seq=2))
        assert time.monotonic() - t < 2  # enqueueing does not wait for SMTP
        from rq.job import Job

        ids = ["crane-mail-demo-42-begin-1", "crane-mail-demo-42-end-2"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the worker tried, failed, and scheduled a retry
            jobs = [Job.fetch(i, connection=plugin.redis) for i in ids]
            if all(j.retries_left is not None and j.retries_left < 30 for j in jobs):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no send was tried: {[j.get_status() for j in jobs]}")
        server.start()
        msgs = server.inbox.wait(2, timeout=60)
        assert sorted(m["Subject"].split(")")[1].split()[0] for m in msgs) == ["Began", "Ended:"]
    finally:
        plugin.crane_plugin_shutdown()


def test_own_worker_started_and_stopped(redis_url, smtp):
    plugin = configure(redis_url, smtp.port, StartWorker=True)
    proc = plugin.worker
    try:
        assert proc is not None and proc.poll() is None
        plugin.crane_event(event=event("job.started", mail=["BEGIN"]))
        assert len(smtp.inbox.wait(1, timeout=60)) == 1
    finally:
        plugin.crane_plugin_shutdown()
    assert proc.poll() is not None and plugin.worker is None


def test_site_template_overrides_by_name(redis_url, smtp, tmp_path):
    (tmp_path / "subject.txt").write_text("CUSTOM {{ type }} job {{ job_id }} for {{ user }}\n")
    (tmp_path / "fail").mkdir()
    (tmp_path / "fail" / "body.txt").write_text("Sorry {{ user }}, job {{ job_id }} failed ({{ exit_code }}).\n")
    plugin = configure(redis_url, smtp.port, TemplateDir=str(tmp_path))
    try:
        plugin.crane_event(event=event("job.ended", state="Failed", exit_code=2, mail=["FAIL"]))
        plugin.crane_event(event=event("job.ended", seq=2, state="Completed", mail=["END"]))
        drain(plugin)
        fail, end = sorted(smtp.inbox.wait(2), key=lambda m: m["Subject"], reverse=True)
        assert fail["Subject"] == "CUSTOM FAIL job 42 for alice"
        text, html = parts(fail)
        assert text == "Sorry alice, job 42 failed (2:0).\n"
        assert "<table" in html  # not overridden: the bundled HTML part
        assert end["Subject"] == "CUSTOM END job 42 for alice"
        assert "Job id" in parts(end)[0]  # the bundled plain-text body: fail/ overrides only FAIL
    finally:
        plugin.crane_plugin_shutdown()


def test_html_part_is_escaped(mailer, smtp):
    mailer.crane_event(event=event("job.started", mail=["BEGIN"], name="<b>x</b>&y"))
    drain(mailer)
    text, html = parts(smtp.inbox.wait(1)[0])
    assert "&lt;b&gt;x&lt;/b&gt;&amp;y" in html and "<b>x</b>&y" in text


def _bad_template_dir(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    return str(tmp_path)


@pytest.mark.parametrize("settings,message", [
    ({"Bogus": 1}, "unknown setting(s) Bogus"),
    ({"SmtpPort": 0}, "SmtpPort must be between 1 and 65535"),
    ({"SmtpPort": "x"}, "SmtpPort must be a whole number"),
    ({"StartTLS": "maybe"}, "StartTLS must be true or false"),
    ({"SSL": True, "StartTLS": True}, "exclude each other"),
    ({"SmtpCaFile": "/etc/hostname"}, "SmtpCaFile needs StartTLS or SSL"),
    ({"SmtpCaFile": "/no/ca.pem", "StartTLS": True}, "SmtpCaFile /no/ca.pem: not a file"),
    ({"TemplateDir": "/no/such/dir"}, "TemplateDir /no/such/dir: not a directory"),
    ({"RetryIntervals": [5, -1]}, "RetryIntervals must be between 0 and 86400"),
    ({"RetryIntervals": []}, "RetryIntervals must be a list"),
    ({"Retries": -1}, "Retries must be between 0 and 1000"),
    ({"From": "two words@x"}, "From: the mail user must be one address"),
    ({"MailDomain": "bad domain"}, "MailDomain 'bad domain' is not a host name"),
    ({"RedisUrl": "http://x"}, "RedisUrl must be a redis://"),
    ({"Queue": "a:b"}, "Queue must be a plain name"),
    ({"PasswordFile": "/no/such/file", "User": "u"}, "PasswordFile /no/such/file: No such file"),
    ({"PasswordFile": "/etc/hostname"}, "PasswordFile needs User"),
    ({"Username": "u"}, "Username needs a Password"),
    ({"CredentialsFile": "/no/such.json"}, "CredentialsFile /no/such.json: No such file"),
])
def test_bad_settings_one_line_error(redis_url, settings, message):
    with pytest.raises(ValueError) as exc:
        configure(redis_url, 25, **settings)
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name,content,message", [
    ("body.txt", "{% if %}", "/body.txt, line 1: Expected an expression"),
    ("subject.txt", "{{ no_such_variable }}", "/subject.txt: UndefinedError: 'no_such_variable' is undefined"),
])
def test_bad_site_template_is_a_configure_error(redis_url, tmp_path, name, content, message):
    with pytest.raises(ValueError) as exc:
        configure(redis_url, 25, TemplateDir=_bad_template_dir(tmp_path, name, content))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_rejected_settings_through_the_kernel_loader(redis_url):
    with pytest.raises(PluginError) as exc:
        plugins.load_slots({"Events": ["mail"], "Settings": {"mail": {"RedisUrl": redis_url, "SmtpPort": 99999,
                                                                        "StartWorker": False}}})
    assert str(exc.value) == ("events plugin 'mail' rejected its settings: "
                              "SmtpPort must be between 1 and 65535, not 99999")
    loaded = plugins.load_slots({"Events": ["mail"], "Settings": {"mail": {"RedisUrl": redis_url,
                                                                           "StartWorker": False}}})
    try:
        assert loaded.names("events") == ["mail"]
    finally:
        loaded.pm.hook.crane_plugin_shutdown()


def test_redis_down_at_configure_is_not_fatal_but_events_raise(smtp):
    from crane_tools.redis_server import free_port

    plugin = configure(f"redis://127.0.0.1:{free_port()}/0", smtp.port)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the host retries the event later
            plugin.crane_event(event=event("job.started", mail=["BEGIN"]))
    finally:
        plugin.crane_plugin_shutdown()


def test_closed_redis_with_the_documented_acl_and_a_credentials_file(tmp_path, smtp):
    """A Redis whose default user is off: the plugin and its worker use only rq's keys (REDIS_ACL)."""
    import json

    from crane_notify_mail import REDIS_ACL
    from crane_tools.redis_server import RedisServer

    acl = tmp_path / "users.acl"
    acl.write_text("user default off resetkeys resetchannels -@all\n"
                   "user admin on >adminpw ~* &* +@all\n"
                   f"user crane-mail on >mailpw {REDIS_ACL}\n")
    creds = tmp_path / "mail.json"
    creds.write_text(json.dumps({"user": "crane-mail", "password": "mailpw"}))
    with RedisServer(tmp_path / "redis", acl_file=acl, auth=("admin", "adminpw")) as srv:
        with pytest.raises(ValueError, match="refused the credentials"):
            configure(srv.url, smtp.port, Username="crane-mail", Password="wrong")
        plugin = configure(srv.url, smtp.port, CredentialsFile=str(creds), StartWorker=True)
        try:
            plugin.crane_event(event=event("job.ended", state="OutOfMemory", exit_code=0, mail=["FAIL", "OOM"]))
            subjects = sorted(m["Subject"] for m in smtp.inbox.wait(2, timeout=60))
            assert "Failed: OutOfMemory" in subjects[0] and "Ran out of memory" in subjects[1]
        finally:
            plugin.crane_plugin_shutdown()
        import redis

        admin = redis.Redis.from_url(srv.url, username="admin", password="adminpw")
        denied = [e for e in admin.execute_command("ACL", "LOG", "50")  # but the wrong password and CLIENT LIST
                  if e[b"reason"] != b"auth" and e[b"object"] != b"client|list"]
        assert denied == []


def test_smtp_login_with_a_password_file(redis_url, smtp_auth, tmp_path):
    secret = tmp_path / "smtp.pw"
    secret.write_text("s3cret\n")
    plugin = configure(redis_url, smtp_auth.port, User="alice", PasswordFile=str(secret))
    try:
        plugin.crane_event(event=event("job.started", mail=["BEGIN"]))
        assert "s3cret" not in str(plugin.queue.get_jobs()[0].args)  # only the file's path goes to Redis
        drain(plugin)
        assert len(smtp_auth.inbox.wait(1)) == 1 and smtp_auth.inbox.logins == ["alice"]
    finally:
        plugin.crane_plugin_shutdown()


def test_permanent_refusal_is_not_retried(mailer, smtp):
    from rq.job import Job

    mailer.crane_event(event=event("job.started", mail=["BEGIN"], mail_user="nobody@example.org"))
    drain(mailer)
    job = Job.fetch("crane-mail-demo-42-begin-1", connection=mailer.redis)
    assert job.get_status() == "finished" and job.return_value().startswith("refused: ")
    assert job.retries_left == 30 and smtp.inbox.messages == []


def test_starttls_verified_against_the_site_ca(redis_url, smtp_tls):
    server, ca = smtp_tls
    plugin = configure(redis_url, server.port, StartTLS=True, SmtpCaFile=ca)
    try:
        plugin.crane_event(event=event("job.started", mail=["BEGIN"]))
        drain(plugin)
        assert len(server.inbox.wait(1)) == 1
    finally:
        plugin.crane_plugin_shutdown()


def test_starttls_with_an_unknown_certificate_is_retried_not_sent(redis_url, smtp_tls):
    from rq.job import Job

    server, _ca = smtp_tls
    plugin = configure(redis_url, server.port, StartTLS=True)  # the system's CAs do not know the test CA
    try:
        plugin.crane_event(event=event("job.started", mail=["BEGIN"]))
        drain(plugin)
        job = Job.fetch("crane-mail-demo-42-begin-1", connection=plugin.redis)
        assert job.get_status() == "scheduled" and job.retries_left == 29
        assert server.inbox.messages == []
    finally:
        plugin.crane_plugin_shutdown()
