"""Build hook: generate the gRPC/protobuf modules from crane_common/proto/*.proto."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def generate_protos() -> None:
    """Run grpc_tools.protoc over the .proto files kept beside the kernel package."""
    from grpc_tools import protoc  # build-time dependency only

    here = Path(__file__).resolve().parent
    proto_dir = here / "crane_common" / "proto"
    include = Path(protoc.__file__).parent / "_proto"
    for proto in sorted(proto_dir.glob("*.proto")):
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{here}",
            f"-I{include}",
            f"--python_out={here}",
            f"--grpc_python_out={here}",
            str(proto.relative_to(here)),
        ])
        if rc != 0:
            raise SystemExit(f"protoc failed on {proto}")


class BuildWithProtos(build_py):
    """build_py that generates the protobuf modules first."""

    def run(self) -> None:
        """Generate, then build as usual."""
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
