"""forgelab's core: plugin host, registry, config, runner, tracking, checkpoints and CLI.

Importing this package is cheap (no torch, gymnasium, SB3 or wandb): plugins import
``forgelab.core.hookimpl`` at load time, and ``forgelab --help`` must stay instant.
"""

from forgelab.core.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
