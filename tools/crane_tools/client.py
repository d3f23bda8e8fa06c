"""A Python client of the controller's public API (for tools, the demo, benchmarks and tests).

The CLI commands have their own leaner client (``crane_cli``) tuned for
start-up time; this one favours convenience.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import grpc
from crane_common import tokens
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg


class CtldClient:
    """Calls ``crane.grpc.CraneCtld`` with a bearer token."""

    def __init__(self, address: str, token: str | None, timeout: float = 30.0, tls: Any = None,
                 server_name: str = "") -> None:
        self.address = address
        options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self.channel = (grpc.secure_channel(address, tls, options=options) if tls is not None
                        else grpc.insecure_channel(address, options=options))
        self.stub = pbg.CraneCtldStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    @classmethod
    def from_config(cls, path: str | None = None, token: str | None = None) -> "CtldClient":
        """Client for the cluster in ``path`` (token: given, else the caller's usual token)."""
        from crane_kernel.config import load_config

        cfg = load_config(path)
        host = cfg.ControlMachine
        tls = cfg.CraneCtld.Tls
        creds = None
        if tls.CA:
            def read(p: str) -> bytes:
                """A TLS file's bytes (relative to CraneBaseDir)."""
                with open(os.path.join(cfg.base_dir, p), "rb") as fh:
                    return fh.read()

            pair = (read(tls.ClientKey), read(tls.ClientCert)) if tls.ClientCert and tls.ClientKey else (None, None)
            creds = grpc.ssl_channel_credentials(read(tls.CA), *pair)
        return cls(f"{host}:{cfg.CraneCtldListenPort}", token or tokens.find_client_token(cfg.key_file),
                   tls=creds, server_name=tls.ServerName)

    def _call(self, name: str, request: Any) -> Any:
        return getattr(self.stub, name)(request, metadata=self.metadata, timeout=self.timeout)

    # -- jobs --------------------------------------------------------------------
    @staticmethod
    def spec(script: str = "", *, wrap: str | None = None, **fields: Any) -> Any:
        """Build a ``JobSpec``: ``wrap`` is a command line turned into a bash script."""
        if wrap is not None:
            script = f"#!/bin/bash\n{wrap}\n"
        fields.setdefault("cwd", os.getcwd())
        fields.setdefault("submit_dir", fields["cwd"])
        fields.setdefault("interpreter", "/bin/bash")
        fields.setdefault("env", {k: v for k, v in os.environ.items() if k.startswith("CRANE_") or k == "PATH"})
        return pb.JobSpec(script=script, **fields)

    def submit(self, spec: Any, count: int = 1) -> list[int]:
        """Submit ``spec`` ``count`` times; raise RuntimeError with the controller's reason if refused."""
        if count == 1:
            reply = self._call("SubmitBatchJob", pb.SubmitBatchJobRequest(job=spec))
            if not reply.ok:
                raise RuntimeError(reply.reason)
            return [reply.job_id]
        reply = self._call("SubmitBatchJobs", pb.SubmitBatchJobsRequest(job=spec, count=count))
        if not reply.ok:
            raise RuntimeError(reply.reason)
        return list(reply.job_ids)

    def jobs(self, ids: Iterable[int] = (), *, include_finished: bool = False, **filters: Any) -> list[Any]:
        """Query jobs (pending and running by default)."""
        reply = self._call("QueryJobsInfo", pb.QueryJobsInfoRequest(
            job_ids=list(ids), include_finished=include_finished, **filters))
        return list(reply.jobs)

    def job(self, job_id: int) -> Any:
        """One job, in whatever state (None if unknown)."""
        found = self.jobs([job_id], include_finished=True)
        return found[0] if found else None

    def cancel(self, ids: Iterable[int]) -> Any:
        """Cancel jobs by id; returns the reply (cancelled / not_cancelled / reasons)."""
        return self._call("CancelJob", pb.CancelJobRequest(job_ids=list(ids)))

    def modify(self, ids: Iterable[int], **change: Any) -> Any:
        """Pin priority, hold/release or set a time limit."""
        return self._call("ModifyJob", pb.ModifyJobRequest(job_ids=list(ids), **change))

    # -- cluster -------------------------------------------------------------------
    def nodes(self) -> list[Any]:
        """All nodes."""
        return list(self._call("QueryCranedInfo", pb.QueryCranedInfoRequest()).nodes)

    def partitions(self) -> list[Any]:
        """All partitions."""
        return list(self._call("QueryPartitionInfo", pb.QueryPartitionInfoRequest()).partitions)

    def drain(self, names: list[str], reason: str) -> Any:
        """Drain nodes."""
        return self._call("ModifyNode", pb.ModifyNodeRequest(names=names, state="drain", reason=reason))

    def resume(self, names: list[str]) -> Any:
        """Resume drained nodes."""
        return self._call("ModifyNode", pb.ModifyNodeRequest(names=names, state="resume"))

    def server_info(self) -> Any:
        """Version, cluster name and the caller's identity as the controller sees it."""
        return self._call("QueryServerInfo", pb.ServerInfoRequest())

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns a truthy value; return it, or raise TimeoutError."""
    import time

    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)
