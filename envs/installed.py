"""Importing this module registers the environments of every installed forgelab plugin (and
forgelab's own) with gymnasium, for code that uses gymnasium without forgelab's runner::

    import gymnasium
    env = gymnasium.make("forgelab.envs.installed:mylab/Corridor-v0")   # gymnasium imports
                                                                        # the module first
    # or: import forgelab.envs.installed; gymnasium.make("mylab/Corridor-v0")

forgelab's runner and CLI do this themselves. Plugins load as they do for ``forgelab``
(``FORGELAB_DISABLE_PLUGINS`` / ``FORGELAB_STRICT_PLUGINS`` apply); a plugin that fails to
load is skipped, and ``forgelab plugins`` says why.
"""

from forgelab.envs.registration import apply_env_registrations

apply_env_registrations()
