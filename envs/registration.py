"""Plugin environments into gymnasium's registry: the RL side of the ``register_envs`` hook.

The plugin host only records what ``register_envs`` registered (an id, an entry point string,
kwargs, a time limit), like any other registration; it never imports gymnasium. This module
puts those records into gymnasium's registry, once per host::

    from forgelab.envs.registration import apply_env_registrations
    apply_env_registrations(host)      # every plugin env id now works with gymnasium.make

An id that gymnasium already knows with another entry point is a clash: the plugin's
environment is refused (an error in strict mode) and gymnasium's stays. The same entry point
(``import forgelab.envs`` and the built-in ``envs`` plugin register the same strings) is not a
clash.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

import gymnasium

#: the key of the per-host "already applied" mark (:meth:`PluginHost.first_time`)
_APPLIED = "envs.registration"


def apply_env_registrations(host: Any = None) -> None:
    """Put every plugin environment of ``host`` (the process-wide host by default) into
    gymnasium's registry; a second call for the same host does nothing."""
    if host is None:
        from forgelab.core.pluginhost import get_host

        host = get_host()
    if not host.first_time(_APPLIED):
        return
    for reg in list(host.registry.all("env")):
        spec = gymnasium.registry.get(reg.name)
        if spec is not None:
            if same_entry_point(spec.entry_point, reg.factory):
                continue
            message = (f"environment {reg.name!r} from {reg.source} clashes with the id "
                       f"already in gymnasium's registry (entry point {spec.entry_point!r})")
            host.refuse(reg, message)
            # The plugin report was printed before environments are applied: say it now,
            # so a clash is never silent.
            print(f"warning: {message}; gymnasium's environment is used", file=sys.stderr)
            continue
        gymnasium.register(
            id=reg.name,
            entry_point=reg.factory,
            kwargs=reg.metadata.get("kwargs") or {},
            max_episode_steps=reg.metadata.get("max_episode_steps"),
            reward_threshold=reg.metadata.get("reward_threshold"),
            nondeterministic=bool(reg.metadata.get("nondeterministic", False)),
        )


def register_builtin_envs() -> None:
    """Put forgelab's own environments into gymnasium's registry (``import forgelab.envs``).

    Their one table is the built-in ``envs`` plugin's registrations: it is found through its
    entry point (as the runner finds it) and applied by a host of its own, whatever
    ``FORGELAB_DISABLE_PLUGINS`` says. Ids already in gymnasium's registry are kept.
    """
    from forgelab.core.pluginhost import ENTRY_POINT_GROUP, PluginHost

    host = PluginHost(strict=False, disabled=set())
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name="envs"):
        if ep.value.startswith("forgelab."):
            host.add_plugin(ep.load(), ep.name, distribution="forgelab")
    apply_env_registrations(host)


def env_distribution(env_id: str) -> dict[str, str | None]:
    """The distribution that provides a gymnasium id registered outside forgelab's plugins
    (gymnasium's own, or a package that registers on import)."""
    try:
        entry = gymnasium.spec(env_id).entry_point
    except Exception:  # an id this process cannot resolve: record nothing rather than fail
        return {"distribution": None, "version": None}
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    top = module.replace(":", ".").split(".")[0]
    dists = metadata.packages_distributions().get(top, [])
    if not dists:
        return {"distribution": None, "version": None}
    return {"distribution": dists[0], "version": metadata.version(dists[0])}


def same_entry_point(a: Any, b: Any) -> bool:
    """Whether two entry points (``"module:Class"`` strings or objects) name the same thing."""
    def norm(x: Any) -> str:
        if isinstance(x, str):
            return x.replace(":", ".")
        return f"{getattr(x, '__module__', '')}.{getattr(x, '__qualname__', repr(x))}"

    return norm(a) == norm(b)
