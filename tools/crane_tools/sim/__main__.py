"""``python -m crane_tools.sim``."""

from crane_tools.sim.cli import main

raise SystemExit(main())
