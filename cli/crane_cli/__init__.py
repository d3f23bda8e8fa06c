"""crane_cli: the cranesched user and admin commands.

``cbatch``, ``crun``, ``calloc``, ``cqueue``, ``cinfo``, ``ccancel``, ``ccontrol`` and ``crane`` are
thin gRPC clients of ``cranectld`` (crun and calloc hold one ``CrunStream`` open,
:mod:`crane_cli.interactive`), with their flags on click (:mod:`crane_cli.cliparse`). They
start fast: every module here imports only the standard library pieces it needs, and
grpc/protobuf are loaded (with their asyncio-related baggage deferred, see
:mod:`crane_cli.fastimport`) only by the commands that talk to the controller. ``inspect``,
which click imports but the commands do not use, is deferred here, before any module of the
package can import click.
"""

from crane_cli import fastimport as _fastimport

__version__ = "0.1.0"

_fastimport.install(_fastimport.CLICK_BAGGAGE)
