"""Build hook: generate crane_runtime_cri/cri_pb2*.py from cri.proto (like common/setup.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def generate_protos() -> None:
    """Run grpc_tools.protoc over crane_runtime_cri/cri.proto."""
    from grpc_tools import protoc  # build-time dependency only

    here = Path(__file__).resolve().parent
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["grpc_tools.protoc", f"-I{here}", f"-I{include}", f"--python_out={here}",
                      f"--grpc_python_out={here}", "crane_runtime_cri/cri.proto"])
    if rc != 0:
        raise SystemExit("protoc failed on crane_runtime_cri/cri.proto")


class BuildWithProtos(build_py):
    """build_py that generates the protobuf modules first."""

    def run(self) -> None:
        """Generate, then build as usual."""
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
