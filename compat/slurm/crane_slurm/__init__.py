"""Slurm-compatible commands for cranesched: thin wrappers that translate Slurm's flags and output forms.

``crane-slurm <command> [args]`` (or a link named after the command) runs one of
:data:`crane_slurm.main.COMMANDS`; ``crane-slurm install DIR`` creates the links. See
docs/slurm-wrappers.md.
"""

__version__ = "0.1.0"
