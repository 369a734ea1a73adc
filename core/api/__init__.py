"""forgelab: a lab for reinforcement learning and generative models.

The Python API, for notebooks and scripts (the same jobs as the ``forgelab`` command)::

    import forgelab

    run = forgelab.train("cartpole-ppo", seed=1, train={"total_steps": 20_000})
    run.dir, run.status, run.metrics["eval/return_mean"], run.history[-1]

    policy = forgelab.load(run.dir)                # or a checkpoints/step-* folder
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.predict(obs, deterministic=True)

    sampler = forgelab.load("runs/digits-vae/...")   # generative runs give a sampler
    images = sampler.sample(16, seed=0)

Names are imported on first use, so ``import forgelab`` stays light (no torch).

This file is ``core/api/__init__.py`` in the repository: pyproject.toml maps the ``forgelab``
package there, next to ``forgelab.core`` in ``core/`` and the other subpackages.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> module that defines it
_EXPORTS = {
    "train": "forgelab.core.python_api",
    "resume": "forgelab.core.python_api",
    "Run": "forgelab.core.python_api",
    "list_experiments": "forgelab.core.python_api",
    "load": "forgelab.core.loading",
    "Policy": "forgelab.core.loading",
    "Sampler": "forgelab.core.loading",
    "ForgelabError": "forgelab.core.errors",
    "ConfigError": "forgelab.core.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("forgelab")
        except PackageNotFoundError:  # a source tree on sys.path without an install
            return "0+unknown"
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'forgelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
