"""``python -m crane_kernel.bus init [-C config]``: create the bus credentials and Redis's ACL file (as root).

Idempotent: an existing master secret is kept, so running it again (e.g. after adding nodes to the
config) changes no password; every role file and ``users.acl`` is rewritten for the config's nodes.
``cranectld`` does the same at start-up; run this first when Redis must load the ACL file before the
controller ever started (see docs/security.md, "The bus").
"""

from __future__ import annotations

import argparse
import os
import sys

from crane_kernel.bus import credentials
from crane_kernel.config import load_config
from crane_kernel.errors import CraneError


def main(argv: list[str] | None = None) -> int:
    """Run the ``init`` verb; one-line errors, exit 1."""
    ap = argparse.ArgumentParser(prog="python -m crane_kernel.bus", description="cranesched bus credentials")
    ap.add_argument("verb", choices=["init"], help="init: create what is missing, write users.acl")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        nodes = list(cfg.node_table())
        credentials.ensure(cfg.bus_dir, cfg.ClusterName, nodes, cfg.Bus.AclSelectors)
    except (CraneError, OSError) as exc:
        print(f"crane bus: {exc}", file=sys.stderr)
        return 1
    print(f"bus credentials for {len(nodes)} node(s) in {cfg.bus_dir}; Redis ACL file "
          f"{os.path.join(cfg.bus_dir, credentials.ACL_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
