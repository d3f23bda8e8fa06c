"""TLS on the gRPC API with real certificates: the commands verify the server, mTLS refuses certless clients.

The server side is cranectld's own :func:`crane_kernel.ctld.main.server_credentials` in front of a
FakeCtld; the certificates come from ``crane certs`` (crane_tools.certs), made in a tmp dir.
"""

from __future__ import annotations

import subprocess
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cli_support import script_path, write_config
from crane_common.proto import crane_pb2_grpc as pbg
from crane_tools import certs
from fakectld import FakeCtld, make_jobs


def serve(tmp_path: Path, tls: dict[str, str]) -> tuple[grpc.Server, int]:
    """A FakeCtld behind the server credentials cranectld builds from ``CraneCtld.Tls: tls``."""
    from crane_kernel.config import parse_config
    from crane_kernel.ctld.main import server_credentials

    cfg = parse_config({"CraneBaseDir": str(tmp_path), "Nodes": [{"name": "a", "cpu": 1, "memory": "1G"}],
                        "Partitions": [{"name": "p", "nodes": "a"}], "CraneCtld": {"Tls": tls}})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_CraneCtldServicer_to_server(FakeCtld(make_jobs(3)), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(cfg))
    server.start()
    return server, port


@pytest.fixture
def pki(tmp_path):
    """A cluster CA with a server certificate for 127.0.0.1/localhost, a wrong-host one and a client one."""
    d = tmp_path / "tls"
    certs.init_ca(str(d), "unit")
    certs.issue(str(d), "cranectld", server=True, hosts=["127.0.0.1", "localhost"])
    certs.issue(str(d), "elsewhere", server=True, hosts=["ctld.elsewhere.example"])
    certs.issue(str(d), "admin", server=False)
    other = tmp_path / "other-ca"
    certs.init_ca(str(other), "other")
    return d


def run(tmp_path: Path, port: int, client_tls: dict[str, str] | None,
        env: dict[str, str]) -> subprocess.CompletedProcess:
    """``cqueue`` against 127.0.0.1:port with ``CraneCtld.Tls: client_tls`` in its config."""
    conf = write_config(tmp_path, port)
    if client_tls:
        conf.write_text(conf.read_text() + "CraneCtld:\n  Tls:\n"
                        + "".join(f"    {k}: {v}\n" for k, v in client_tls.items()))
    return subprocess.run([script_path("cqueue")], env={**env, "CRANE_CONFIG": str(conf)}, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_verifies_the_server(tmp_path, pki, cli_env):
    server, port = serve(tmp_path, {"Cert": f"{pki}/cranectld.crt", "Key": f"{pki}/cranectld.key"})
    try:
        ok = run(tmp_path, port, {"CA": f"{pki}/ca.crt"}, cli_env)
        assert ok.returncode == 0, ok.stderr
        assert "JOBID" in ok.stdout
        plain = run(tmp_path, port, None, cli_env)                                   # no CA: no TLS, refused
        assert plain.returncode == 3 and "Connection to CraneCtld is broken" in plain.stderr
        foreign = run(tmp_path, port, {"CA": f"{tmp_path}/other-ca/ca.crt"}, cli_env)  # another CA
        assert foreign.returncode == 3 and "Connection to CraneCtld is broken" in foreign.stderr
        assert len(foreign.stderr.strip().splitlines()) == 1
        missing = run(tmp_path, port, {"CA": f"{tmp_path}/nope.crt"}, cli_env)
        assert missing.returncode == 3 and "Cannot read the TLS CA certificate" in missing.stderr
    finally:
        server.stop(0)


def test_a_certificate_for_another_host_is_refused(tmp_path, pki, cli_env):
    server, port = serve(tmp_path, {"Cert": f"{pki}/elsewhere.crt", "Key": f"{pki}/elsewhere.key"})
    try:
        r = run(tmp_path, port, {"CA": f"{pki}/ca.crt"}, cli_env)
        assert r.returncode == 3 and "Connection to CraneCtld is broken" in r.stderr
        named = run(tmp_path, port, {"CA": f"{pki}/ca.crt", "ServerName": "ctld.elsewhere.example"}, cli_env)
        assert named.returncode == 0, named.stderr                                  # the name it does carry
    finally:
        server.stop(0)


def test_mtls_refuses_a_client_without_a_certificate(tmp_path, pki, cli_env):
    server, port = serve(tmp_path, {"Cert": f"{pki}/cranectld.crt", "Key": f"{pki}/cranectld.key",
                                    "ClientCA": f"{pki}/ca.crt"})
    try:
        bare = run(tmp_path, port, {"CA": f"{pki}/ca.crt"}, cli_env)
        assert bare.returncode == 3 and "Connection to CraneCtld is broken" in bare.stderr
        server_cert_as_client = run(tmp_path, port, {"CA": f"{pki}/ca.crt"},
                                    {**cli_env, "CRANE_TLS_CERT": f"{tmp_path}/other-ca/ca.crt",
                                     "CRANE_TLS_KEY": f"{tmp_path}/other-ca/ca.key"})
        assert server_cert_as_client.returncode == 3                               # not signed by the ClientCA
        with_cert = run(tmp_path, port, {"CA": f"{pki}/ca.crt", "ClientCert": f"{pki}/admin.crt",
                                         "ClientKey": f"{pki}/admin.key"}, cli_env)
        assert with_cert.returncode == 0, with_cert.stderr
    finally:
        server.stop(0)


def test_crane_certs_verb(tmp_path, cli_env):
    d = tmp_path / "pki"
    crane = script_path("crane")
    r = subprocess.run([crane, "certs", "init", "--dir", str(d)], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    again = subprocess.run([crane, "certs", "init", "--dir", str(d)], env=cli_env, capture_output=True, text=True)
    assert again.returncode == 6 and "exists" in again.stderr
    r = subprocess.run([crane, "certs", "issue", "--server", "ctld", "--host", "10.0.0.1", "--host", "ctld.example",
                        "--dir", str(d)], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((d / "ctld.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["ctld.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert (d / "ctld.key").stat().st_mode & 0o777 == 0o600


def test_half_a_tls_config_is_refused():
    from crane_kernel.config import parse_config
    from crane_kernel.errors import ConfigError

    base = {"Nodes": [{"name": "a", "cpu": 1, "memory": "1G"}], "Partitions": [{"name": "p", "nodes": "a"}]}
    for tls, named in (({"Cert": "c"}, "Cert and Key"), ({"ClientCA": "x"}, "ClientCA needs")):
        with pytest.raises((ConfigError, ValueError), match=named):
            parse_config({**base, "CraneCtld": {"Tls": tls}})
