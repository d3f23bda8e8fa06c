"""crane_common: what both sides of the gRPC API share, with no heavy dependencies.

The public API (``proto``: generated protobuf and gRPC modules), job states and
exit codes (``states``), hostlist expressions (``hostlist``), signed identity
tokens (``tokens``) and the one parser of durations and memory amounts
(``units``). The CLI on a login node needs only this distribution, grpcio and
protobuf; the daemons (``crane_kernel``) build on it.
"""

__version__ = "0.1.0"
