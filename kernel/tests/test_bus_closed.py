"""The closed bus's parts: credentials and ACL, signed commands and replays, report origins, bounds, TLS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

import pytest
from crane_kernel import messages as m
from crane_kernel.bus import Bus, Consumer, credentials
from crane_kernel.bus.client import TlsSettings
from crane_kernel.bus.signing import CommandSigner, CommandVerifier, ReportOrigin
from crane_kernel.errors import BusMessageError
from crane_kernel.resp import xadd_once
from crane_tools.redis_server import RedisServer, free_port
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError


@pytest.fixture
def closed(tmp_path: Any) -> Any:
    """A real redis-server loading the ACL file of a two-node cluster ``x``."""
    d = str(tmp_path / "bus")
    secret = credentials.ensure(d, "x", ["cn01", "cn02"])
    admin = credentials.load_role(d, "admin")
    srv = RedisServer(data_dir=tmp_path / "redis", acl_file=os.path.join(d, credentials.ACL_FILE),
                      auth=(admin.user, admin.password))
    srv.start()
    try:
        yield srv, d, secret
    finally:
        srv.stop()


def _bus(srv: RedisServer, d: str, role: str, **kw: Any) -> Bus:
    return Bus(srv.url, "x", credentials=credentials.load_role(d, role), **kw)


def test_credentials_are_root_only_and_stable(tmp_path):
    d = str(tmp_path / "bus")
    secret = credentials.ensure(d, "x", ["cn01"])
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert all(os.stat(os.path.join(d, f)).st_mode & 0o777 == 0o600 for f in os.listdir(d))
    before = credentials.load_role(d, "node-cn01")
    assert credentials.ensure(d, "x", ["cn01", "cn02"]) == secret  # adding a node changes no password
    assert credentials.load_role(d, "node-cn01") == before
    assert before.command_key == credentials.command_key(secret, "cn01") and before.password not in repr(before)
    acl = open(os.path.join(d, credentials.ACL_FILE)).read()
    assert before.password not in acl and "user default off" in acl
    with pytest.raises(credentials.CredentialsError, match="node-cn09.json"):
        credentials.load_role(d, "node-cn09")


def test_acl_confines_every_role(closed):
    srv, d, _ = closed
    with pytest.raises((AuthenticationError, ResponseError)):
        Bus(srv.url, "x").redis.xadd("crane:x:node:cn01", {b"m": b"x"})
    n1, ctl = _bus(srv, d, "node-cn01"), _bus(srv, d, "controller")
    n1.publish(n1.report_stream("cn01"), m.FreeJob(job_id=1))
    for stream in ("crane:x:report:cn02", "crane:x:node:cn02", "crane:x:ctld", "crane:x:events", "other"):
        with pytest.raises(NoPermissionError):
            n1.publish(stream, m.FreeJob(job_id=1))
    with pytest.raises(NoPermissionError):
        n1.redis.xrange("crane:x:report:cn02")
    with pytest.raises(NoPermissionError):
        n1.redis.keys("*")
    ctl.publish(ctl.events_stream(), m.FreeJob(job_id=1))
    plug = _bus(srv, d, "cplugind")
    with pytest.raises(NoPermissionError):
        plug.publish(plug.events_stream(), m.FreeJob(job_id=1))
    got: list = []
    Consumer(plug, plug.events_stream(), "p", "p", got.extend, block_ms=0).poll_once()
    assert len(got) == 1
    node = credentials.load_role(d, "node-cn01")
    assert xadd_once(srv.url, "crane:x:report:cn01", {b"m": b"x"}, username=node.user, password=node.password)
    with pytest.raises(ConnectionError, match="NOPERM"):
        xadd_once(srv.url, "crane:x:report:cn02", {b"m": b"x"}, username=node.user, password=node.password)
    with pytest.raises(ConnectionError, match="WRONGPASS"):
        xadd_once(srv.url, "crane:x:report:cn01", {b"m": b"x"}, username=node.user, password="guess")


def test_acl_io_streams_are_the_nodes_own(closed):
    """A node writes only its own io:{node}:* streams and reads only its own ioin:{node}:*; the controller both."""
    from crane_kernel import iostream
    from crane_kernel.resp import Connection, RedisError

    srv, d, _ = closed
    ctl = _bus(srv, d, "controller")
    a, b = credentials.load_role(d, "node-cn01"), credentials.load_role(d, "node-cn02")
    hostport = srv.url.split("//")[1].split("/")[0]
    conn = Connection(f"redis://{a.user}:{a.password}@{hostport}/0")
    own_out, own_in = iostream.out_key("x", "cn01", 5, 1), iostream.in_key("x", "cn01", 5, 1)
    ctl.redis.xadd(own_in, iostream.stdin_entry(0, b"hi"))
    ctl.redis.xadd(iostream.in_key("x", "cn02", 5, 1), iostream.stdin_entry(0, b"secret"))
    _id, length = conn.pipeline([[b"XADD", own_out.encode(), b"*", *sum(
        ([k, v] for k, v in iostream.output_entry(0, 1, b"out").items()), [])], [b"XLEN", own_out.encode()]])
    assert length == 1
    ((_key, entries),) = conn.call("XREAD", "COUNT", 10, "STREAMS", own_in, "0-0")
    assert entries[0][1][5] == b"hi" and conn.call("XDEL", own_in, entries[0][0]) == 1
    for cmd in (["XADD", iostream.out_key("x", "cn02", 5, 1), "*", "k", "o"],
                ["XREAD", "STREAMS", iostream.in_key("x", "cn02", 5, 1), "0-0"],
                ["XDEL", iostream.in_key("x", "cn02", 5, 1), "0-1"],
                ["XLEN", iostream.out_key("x", "cn02", 5, 1)],
                ["DEL", own_out]):
        with pytest.raises(RedisError, match="NOPERM"):
            conn.call(*cmd)
    conn.close()
    other = Connection(f"redis://{b.user}:{b.password}@{hostport}/0")
    with pytest.raises(RedisError, match="NOPERM"):
        other.call("XREAD", "STREAMS", own_in, "0-0")
    other.close()
    assert ctl.redis.xread({own_out: "0-0"}) and ctl.redis.delete(own_out, own_in) == 2


def test_signed_commands_replays_and_restarts(closed, tmp_path):
    srv, d, secret = closed
    signer = CommandSigner("crane:x", lambda n: credentials.command_key(secret, n), epoch=5)
    ctl = _bus(srv, d, "controller", signer=signer)
    n1 = _bus(srv, d, "node-cn01")
    state = str(tmp_path / "seq.json")
    stream = n1.node_stream("cn01")

    def consumer() -> tuple[Consumer, list]:
        got: list = []
        v = CommandVerifier(stream, n1.credentials.command_key, state)  # type: ignore[union-attr]
        return Consumer(n1, stream, "craned", "cn01", lambda b: got.extend(x for _, x in b), block_ms=0, check=v), got

    cons, got = consumer()
    ctl.publish(stream, [m.FreeJob(job_id=1), m.FreeJob(job_id=2)])
    cons.poll_once()
    assert [x.job_id for x in got] == [1, 2]
    (old,) = [f for _, f in ctl.redis.xrange(stream)][-1:]
    ctl.redis.xadd(stream, old)                                        # replay
    ctl.redis.xadd(stream, {**old, b"m": old[b"m"].replace(b"2", b"3")})  # tampered
    ctl.redis.xadd(stream, {b"m": old[b"m"]})                          # unsigned
    other = CommandSigner("crane:x", lambda n: credentials.command_key(secret, "cn02"), epoch=9)
    ctl.redis.xadd(stream, other.fields(stream, m.encode(m.FreeJob(job_id=4))))  # another node's key
    cons.poll_once()
    assert [x.job_id for x in got] == [1, 2] and cons.check.refused == 4  # type: ignore[union-attr]
    reasons = [f[b"dlq_reason"] for _, f in ctl.redis.xrange(stream + ":dead")]
    assert any(b"replayed" in r for r in reasons) and any(b"unsigned" in r for r in reasons)
    assert sum(b"bad signature" in r for r in reasons) == 2
    assert json.load(open(state)) == {"epoch": 5, "counter": 2} and os.stat(state).st_mode & 0o777 == 0o600
    cons, got = consumer()                      # the node restarts: still refuses the replay
    ctl.redis.xadd(stream, old)
    signer2 = CommandSigner("crane:x", signer.key_for, epoch=6)  # the controller restarts: counter from 1
    _bus(srv, d, "controller", signer=signer2).publish(stream, m.FreeJob(job_id=7))
    cons.poll_once()
    assert [x.job_id for x in got] == [7]


def test_report_origin_and_placement_check():
    check = ReportOrigin("crane:x")
    status = m.StepStatus(node="cn02", job_id=1, state="finished")
    assert check.check("crane:x:report:cn02", {}, status) is None
    assert "cn02" in (check.check("crane:x:report:cn01", {}, status) or "")
    assert check.check("crane:x:report:cn01", {}, m.FreeJob(job_id=1)) is not None


@pytest.mark.parametrize("field,value", [
    ("time", 1e308), ("time", -1), ("time", float("inf")), ("exit_code", 10**30), ("exit_code", -1),
    ("cpu_time_ms", -5), ("mem_peak", 2**70), ("node", "cn01\n"), ("node", ""), ("node", "x" * 300),
    ("job_id", -1), ("epoch", 2**40), ("id", "a\x00b"),
])
def test_bus_values_are_bounded(field, value):
    good = {"kind": "step_status", "v": 1, "id": "abc", "node": "cn01", "job_id": 1, "state": "finished"}
    m.decode(json.dumps(good))
    with pytest.raises(BusMessageError):
        m.decode(json.dumps({**good, field: value}))


def test_free_text_is_cleaned_not_refused():
    msg = m.decode(json.dumps({"kind": "step_status", "node": "n", "job_id": 1, "state": "finished",
                               "reason": "a\nb" * 5000}))
    assert "\n" not in msg.reason and len(msg.reason) == m.MAX_REASON  # type: ignore[attr-defined]
    with pytest.raises(BusMessageError):
        m.decode(json.dumps({"kind": "node_heartbeat", "node": "n", "steps": [[1, 1, 1]] * (m.MAX_LIST + 1)}))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.skipif(not shutil.which("openssl") or not shutil.which("redis-server"), reason="needs openssl, redis")
def test_tls_with_real_certificates(tmp_path):
    """A real TLS redis-server (Debian's is built with TLS) with a private CA: redis-py and the RESP client."""
    t = str(tmp_path)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{t}/ca.key", "-out", f"{t}/ca.crt",
             "-days", "2", "-subj", "/CN=crane test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{t}/srv.key", "-out", f"{t}/srv.csr",
             "-subj", "/CN=127.0.0.1")
    with open(f"{t}/ext", "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", f"{t}/srv.csr", "-CA", f"{t}/ca.crt", "-CAkey", f"{t}/ca.key",
             "-CAcreateserial", "-out", f"{t}/srv.crt", "-days", "2", "-extfile", f"{t}/ext")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{t}/evil.key", "-out", f"{t}/evil.crt",
             "-days", "2", "-subj", "/CN=evil CA")
    d = f"{t}/bus"
    credentials.ensure(d, "x", ["cn01"])
    port = free_port()
    server = "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else "redis-server"
    proc = subprocess.Popen([server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", f"{t}/srv.crt", "--tls-key-file", f"{t}/srv.key",
                             "--tls-ca-cert-file", f"{t}/ca.crt", "--tls-auth-clients", "no", "--save", "",
                             "--dir", t, "--aclfile", f"{d}/users.acl"], stdout=subprocess.PIPE, text=True)
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        bus = Bus(url, "x", credentials=credentials.load_role(d, "node-cn01"), tls=TlsSettings(ca_file=f"{t}/ca.crt"))
        deadline = time.time() + 10
        while True:
            try:
                bus.ping()
                break
            except Exception:
                if proc.poll() is not None and "TLS" in (proc.stdout.read() if proc.stdout else ""):
                    pytest.skip(f"{server} cannot serve TLS")
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        assert bus.publish(bus.report_stream("cn01"), m.FreeJob(job_id=1))
        assert bus.publish_fresh(bus.report_stream("cn01"), m.FreeJob(job_id=2))
        creds = credentials.load_role(d, "node-cn01")
        assert xadd_once(f"{url}?ssl_ca_certs={t}/ca.crt", "crane:x:report:cn01", {b"m": b"x"},
                         username=creds.user, password=creds.password)
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            xadd_once(url, "crane:x:report:cn01", {b"m": b"x"}, ca_file=f"{t}/evil.crt",
                      username=creds.user, password=creds.password)
        with pytest.raises(ConnectionError):
            xadd_once(f"redis://127.0.0.1:{port}/0", "crane:x:report:cn01", {b"m": b"x"}, timeout=2,
                      username=creds.user, password=creds.password)  # plain text to a TLS port
    finally:
        proc.terminate()
        proc.wait(10)
