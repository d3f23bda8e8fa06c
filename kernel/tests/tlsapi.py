"""The real gRPC service on a local TLS port, with real JWTs, for the kernel's RPC tests."""

from __future__ import annotations

import pwd
from concurrent import futures
from typing import Any

import grpc
from crane_auth_rbac import jwt_tokens
from crane_common.proto import crane_pb2_grpc as pbg


class TlsApi:
    """The service on a local TLS port; :meth:`md` gives a caller's metadata."""

    def __init__(self, harness: Any) -> None:
        from crane_kernel.ctld.main import server_credentials
        from crane_kernel.ctld.service import CraneCtldService
        from crane_tools import certs

        self.h = harness
        tls = f"{harness.cfg.base_dir}/tls"
        certs.init_ca(tls, "unit")
        certs.issue(tls, "cranectld", server=True, hosts=["127.0.0.1", "localhost"])
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pbg.add_CraneCtldServicer_to_server(CraneCtldService(harness.ctl, "fifo"), self.server)
        port = self.server.add_secure_port("127.0.0.1:0", server_credentials(harness.cfg))
        self.server.start()
        with open(f"{tls}/ca.crt", "rb") as fh:
            creds = grpc.ssl_channel_credentials(root_certificates=fh.read())
        self.channel = grpc.secure_channel(f"127.0.0.1:{port}", creds)
        self.stub = pbg.CraneCtldStub(self.channel)
        self.key = jwt_tokens.read_keyring(harness.cfg.key_file)

    def md(self, who: pwd.struct_passwd | None, level: str = "none") -> tuple:
        uid, user = (who.pw_uid, who.pw_name) if who else (0, "root")
        if who is None:
            level = "root"
        return (("authorization", f"Bearer {jwt_tokens.mint(self.key, self.h.cfg.ClusterName, uid, user, level)}"),)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None)
