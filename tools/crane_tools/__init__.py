"""crane_tools: what a developer or researcher runs beside a cluster, not the cluster itself.

The trace simulator (``sim``), the benchmarks (``schedbench``, ``benche2e``),
the demo, a one-machine cluster (``localcluster``), an embedded Redis server
(``redis_server``) and a small Python client of the gRPC API (``client``).
Each ``crane`` verb here (``demo``, ``bench``, ``sim``) is registered through
the ``crane.commands`` entry-point group, the way any installed package can
add one.
"""

__version__ = "0.1.0"
