"""Admin levels, lowest to highest (CraneSched's AdminLevel): the one definition, for the CLI and the daemons."""

ADMIN_LEVELS = ("none", "operator", "admin", "root")
"""``none`` < ``operator`` < ``admin`` < ``root`` (root: the controller host's root, never issued to others)."""
