"""``python -m crane_kernel.sim``."""

from crane_kernel.sim.cli import main

raise SystemExit(main())
