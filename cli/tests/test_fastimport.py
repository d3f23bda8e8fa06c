"""Deferred imports: grpc works without loading its asyncio baggage, and everything loads on demand."""

import subprocess
import sys
import textwrap

from crane_cli import fastimport


def run_py(code: str, env_extra: dict | None = None) -> str:
    import os

    env = dict(os.environ)
    env.pop("CRANE_NO_DEFERRED_IMPORTS", None)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_grpc_call_without_asyncio(fake):
    out = run_py(f"""
        import sys
        from crane_cli import rpc, fastimport
        from crane_cli.clientconf import ClientConfig
        with rpc.Controller(ClientConfig("x", "127.0.0.1", {fake.port}), token="t") as c:
            info = c.call("QueryServerInfo", rpc.pb.ServerInfoRequest())
        print(info.cluster_name)
        heavy = ["asyncio.base_events", "ssl", "concurrent.futures", "google.protobuf.text_format",
                 "typing_extensions", "hashlib", "yaml"]
        print(sorted(m for m in heavy if m in sys.modules))
        print(fastimport.is_deferred("asyncio"), fastimport.is_deferred("grpc.aio"))
    """)
    assert out.splitlines() == ["fakecluster", "[]", "True True"]


def test_deferred_modules_load_on_use(fake):
    out = run_py(f"""
        import sys
        from crane_cli import rpc, fastimport
        fastimport.install(fastimport.TOKEN_BAGGAGE)
        import asyncio
        assert fastimport.is_deferred("asyncio") and fastimport.is_deferred("hmac")
        print(asyncio.run(asyncio.sleep(0, result=7)))
        assert not fastimport.is_deferred("asyncio")
        import grpc, grpc.aio
        from crane_common.proto import crane_pb2 as pb

        async def main():
            async with grpc.aio.insecure_channel("127.0.0.1:{fake.port}") as ch:
                call = ch.unary_unary("/crane.grpc.CraneCtld/QueryServerInfo",
                                      request_serializer=pb.ServerInfoRequest.SerializeToString,
                                      response_deserializer=pb.ServerInfoReply.FromString)
                return (await call(pb.ServerInfoRequest())).scheduler
        print(asyncio.run(main()))
        import inspect, socket, json, hashlib
        print(inspect.isfunction(main), bool(socket.gethostname()), json.dumps([1]),
              hashlib.sha256(b"").hexdigest()[:4])
        from google.protobuf.internal import python_message
        import google.protobuf.internal.python_message as pm
        print(pm is python_message, callable(pm._AttachFieldHelpers))
        print(sorted(vars(sys.modules["hmac"]))[:1] != [], "digest" in dir(sys.modules["hmac"]))
    """)
    assert out.splitlines() == ["7", "fifo", "True True [1] e3b0", "True True", "True True"]


def test_disabled_by_environment():
    out = run_py("""
        import sys
        from crane_cli import rpc
        print("asyncio.base_events" in sys.modules)
    """, {"CRANE_NO_DEFERRED_IMPORTS": "1"})
    assert out.strip() == "True"


def test_defer_never_replaces_a_loaded_module():
    import json

    assert fastimport.defer("json") is False
    assert sys.modules["json"] is json


def test_failed_load_removes_the_module():
    name = "crane_cli_no_such_module_xyz"
    assert fastimport.defer(name)
    mod = sys.modules[name]
    try:
        mod.anything  # noqa: B018
    except ImportError:
        pass
    else:
        raise AssertionError("expected ImportError")
    assert name not in sys.modules


def test_pure_python_protobuf_still_works():
    out = run_py("""
        from crane_cli import fastimport
        fastimport.install()
        from crane_common.proto import crane_pb2 as pb
        m = pb.JobSpec(name="x", gres={"gpu": 2})
        print(pb.JobSpec.FromString(m.SerializeToString()).gres["gpu"])
    """, {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    assert out.strip() == "2"
