"""crane_cli: the cranesched user and admin commands.

``cbatch``, ``cqueue``, ``cinfo``, ``ccancel`` and ``crane`` are thin gRPC
clients of ``cranectld``. They start fast: every module here imports only the
standard library pieces it needs, and grpc/protobuf are loaded (with their
asyncio-related baggage deferred, see :mod:`crane_cli.fastimport`) only by the
commands that talk to the controller.
"""

__version__ = "0.1.0"
