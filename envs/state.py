"""Exact resume for RL agents: snapshot and restore the full state of (vector) environments.

The public home of :mod:`forgelab.envs.snapshots` (where the implementation lives)::

    from forgelab.envs.state import restore_env, snapshot_env

    def state_dict(self):           # mid-episode envs, wrappers, their RNGs and statistics
        return {..., "envs": snapshot_env(self.envs)}

    def load_state_dict(self, state):
        restore_env(self.envs, state["envs"])   # instead of envs.reset(seed=...) in fit()

The snapshot is made of tensors, numbers, lists and dicts, so a checkpoint holding it loads with
``torch.load(weights_only=True)``. An env whose state lives in another library's objects adds
``get_resume_state``/``set_resume_state`` (built with ``capture_attributes`` and
``restore_attributes``). See docs/plugins.md ("Exact resume").
"""

from forgelab.envs.snapshots import (
    capture_attributes,
    restore_attributes,
    restore_env,
    snapshot_env,
)

__all__ = ["capture_attributes", "restore_attributes", "restore_env", "snapshot_env"]
