"""The message bus: Redis streams with consumer groups, at-least-once delivery and a dead-letter stream.

Keys are namespaced by cluster::

    crane:{cluster}:report:{name}  one node's craned/supervisors -> cranectld (group "ctld"; only that node adds)
    crane:{cluster}:node:{name}    cranectld -> one craned             (group "craned"; signed commands)
    crane:{cluster}:events         cranectld -> every event plugin     (one group each)
    {stream}:dead                  entries a consumer gave up on (dead letters)

Each stream entry has one field, ``m``: a message encoded by :func:`crane_kernel.messages.encode`.

Delivery is **at-least-once**: a :class:`Consumer` acknowledges entries only after its handler
returned, so a crash between the effect and the XACK delivers the same entries again (to the same
consumer on restart, or to another one through XAUTOCLAIM). Handlers must therefore be idempotent:
every message carries a unique ``id`` (and state transitions should be guarded), so a duplicate can
be recognised and ignored. Redis is never the source of truth: if it loses its data, consumers
recreate their groups and carry on, and the daemons re-register.

The package has one module per job:

* :mod:`crane_kernel.bus.client` — :class:`Bus`: the Redis client, key names, publishing;
* :mod:`crane_kernel.bus.consumer` — :class:`Consumer`: reading a stream in a group, the handler, acks;
* :mod:`crane_kernel.bus.recovery` — what keeps a stream healthy: claiming stale entries (janitor),
  dead letters, trimming settled entries, recreating a vanished group;
* :mod:`crane_kernel.bus.credentials` — the Redis ACL users per role and their root-only credentials;
* :mod:`crane_kernel.bus.signing` — signed node commands (no replays) and the origin of reports.

The bus is closed (``Bus.Auth``): see docs/security.md, "The bus".

Every module logs as ``crane_kernel.bus``.
"""

from __future__ import annotations

from crane_kernel.bus.client import FIELD, Bus
from crane_kernel.bus.consumer import Consumer, Handler

__all__ = ["FIELD", "Bus", "Consumer", "Handler"]
