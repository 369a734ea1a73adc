"""Exact resume for RL agents: snapshot and restore the full state of (vector) environments.

The public home of :mod:`forgelab.envs.snapshots` (where the implementation lives)::

    from forgelab.envs.state import restore_env, snapshot_env

    def state_dict(self):           # mid-episode envs, wrappers, their RNGs and statistics
        return {..., "envs": snapshot_env(self.envs)}

    def load_state_dict(self, state):
        restore_env(self.envs, state["envs"])   # instead of envs.reset(seed=...) in fit()

The snapshot is made of tensors, numbers, lists and dicts, so a checkpoint holding it loads with
``torch.load(weights_only=True)``. See docs/plugins.md ("Exact resume").
"""

from forgelab.envs.snapshots import restore_env, snapshot_env

__all__ = ["restore_env", "snapshot_env"]
