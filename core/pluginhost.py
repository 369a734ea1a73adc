"""Discovers and loads plugins, isolating each one.

Loading follows conda's plugin loader: every entry point is loaded in its own try/except, a
failure is reported by plugin name and skipped, and a duplicate name is reported with the
distributions that caused it. ``FORGELAB_STRICT_PLUGINS=1`` turns every such report into an
error (for CI and plugin authors); ``FORGELAB_DISABLE_PLUGINS=a,b`` blocks plugins by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from forgelab.core import hookspecs
from forgelab.core.errors import PluginError, closest
from forgelab.core.registry import (
    DuplicateRegistration,
    Kind,
    Registration,
    Registry,
    Source,
    validate_registration,
)

ENTRY_POINT_GROUP = "forgelab"
STRICT_ENV = "FORGELAB_STRICT_PLUGINS"
DISABLE_ENV = "FORGELAB_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "forgelab"

# hook name -> kind of component it registers
HOOKS: dict[str, Kind] = {
    "register_agents": "agent",
    "register_generative_models": "model",
    "register_envs": "env",
    "register_datasets": "dataset",
}

Status = Literal["active", "disabled", "failed"]


@dataclass
class PluginInfo:
    """What `forgelab plugins` shows for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: Status = "active"
    error: str | None = None
    registered: list[tuple[Kind, str]] = field(default_factory=list)

    @property
    def source(self) -> Source:
        return Source(self.name, self.distribution, self.version)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "registered": [{"kind": kind, "name": name} for kind, name in self.registered],
        }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _split_names(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


class PluginHost:
    """Owns the pluggy manager, the plugin table and the component registry.

    :param strict: raise on any plugin problem (default: ``$FORGELAB_STRICT_PLUGINS``).
    :param disabled: plugin names to skip (default: ``$FORGELAB_DISABLE_PLUGINS``).
    """

    def __init__(self, strict: bool | None = None, disabled: Iterable[str] | None = None) -> None:
        self.strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
        self.disabled = (
            _split_names(os.environ.get(DISABLE_ENV)) if disabled is None else set(disabled)
        )
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self._envs_applied = False

    # ----------------------------------------------------------------- discovery
    def load_entry_points(self) -> PluginHost:
        """Load every ``[project.entry-points.forgelab]`` plugin, built-ins first."""
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

        def order(ep: metadata.EntryPoint) -> tuple[int, str]:
            dist = ep.dist.name if ep.dist else ""
            return (0 if dist == BUILTIN_DISTRIBUTION else 1, ep.name)

        loaded: dict[str, metadata.EntryPoint] = {}
        for ep in sorted(entry_points, key=order):
            dist = ep.dist
            first = loaded.get(ep.name)
            if first is not None:
                first_dist = first.dist.name if first.dist else None
                if (first.value, first_dist) == (ep.value, dist.name if dist else None):
                    continue  # the same distribution visible twice on sys.path
                clash = PluginInfo(name=f"{ep.name}@{dist.name if dist else ep.value}",
                                   module=ep.value, distribution=dist.name if dist else None,
                                   version=dist.version if dist else None)
                self.plugins[clash.name] = clash
                self._fail(clash, f"uses the plugin name {ep.name!r}, which {first_dist} "
                           f"({first.value}) already uses; rename its entry point")
                continue
            loaded[ep.name] = ep
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            self._load_one(info, ep.load)
        return self

    def add_plugin(self, plugin: Any, name: str, distribution: str | None = None,
                   version: str | None = None) -> PluginInfo:
        """Register an already imported plugin object (a module or any object with hookimpls)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name=name, module=module, distribution=distribution, version=version)
        self._load_one(info, lambda: plugin)
        return info

    def _load_one(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        self.plugins[info.name] = info
        if info.name in self.disabled:
            info.status = "disabled"
            return
        try:
            plugin = load()
        except Exception as exc:  # broad on purpose: any import error must not take us down
            self._fail(info, f"failed to import {info.module!r}: {type(exc).__name__}: {exc}")
            return
        unknown = self._unknown_hooks(plugin)
        if unknown:
            hints = []
            for hook in unknown:
                guess = closest(hook, HOOKS)
                hints.append(f"{hook!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
            self._fail(info, "implements unknown hook " + ", ".join(hints)
                       + f"; known hooks: {', '.join(HOOKS)}")
            return
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy.PluginValidationError: wrong hook signature
            self._fail(info, f"invalid hook implementation: {exc}")
            return
        self._collect(info)

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        """Names of functions marked @hookimpl that match no hookspec (a typo, usually)."""
        marker = hookspecs.PROJECT_NAME + "_impl"
        names = []
        for attr in dir(plugin):
            try:
                value = getattr(plugin, attr)
            except Exception:
                continue
            if callable(value) and hasattr(value, marker) and attr not in HOOKS:
                names.append(attr)
        return names

    # -------------------------------------------------------------- registration
    def _collect(self, info: PluginInfo) -> None:
        """Call this plugin's hooks, then add its registrations all together or not at all."""
        pending: list[Registration] = []
        try:
            for hook_name, kind in HOOKS.items():
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    if impl.plugin_name == info.name:
                        impl.function(register=self._register_callable(kind, info, pending))
            seen: dict[tuple[Kind, str], Registration] = {}
            for reg in pending:
                key = (reg.kind, reg.name)
                if key in seen:
                    raise DuplicateRegistration(reg, seen[key])
                seen[key] = reg
                validate_registration(reg)
                existing = self.registry.find(reg.kind, reg.name)
                if existing is not None:
                    raise DuplicateRegistration(reg, existing)
        except Exception as exc:
            self.pm.unregister(name=info.name)
            self._fail(info, f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, DuplicateRegistration) else str(exc))
            return
        for reg in pending:
            self.registry.add(reg)
            info.registered.append((reg.kind, reg.name))

    def _register_callable(self, kind: Kind, info: PluginInfo,
                           pending: list[Registration]) -> Callable[..., None]:
        source = info.source
        if kind == "env":

            def register_env(env_id: str, entry_point: Any, *, kwargs: dict | None = None,
                             max_episode_steps: int | None = None, description: str = "",
                             **extra: Any) -> None:
                pending.append(Registration(
                    kind="env", name=env_id, factory=entry_point, config=None,
                    description=description, source=source,
                    metadata={"kwargs": dict(kwargs or {}),
                              "max_episode_steps": max_episode_steps, **extra},
                ))

            return register_env

        def register(name: str, factory: Any, *, config: Any = None, description: str = "",
                     **extra: Any) -> None:
            pending.append(Registration(
                kind=kind, name=name, factory=factory, config=config,
                description=description, source=source, metadata=dict(extra),
            ))

        return register

    def _fail(self, info: PluginInfo, error: str) -> None:
        info.status = "failed"
        info.error = error
        if self.strict:
            raise PluginError(
                f"plugin {info.name!r} ({info.distribution or info.module}) {error}",
                hint=f"fix or uninstall it; {DISABLE_ENV}={info.name} skips it "
                f"(strict because {STRICT_ENV} is set)",
            )

    @property
    def failures(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.status == "failed"]

    # ------------------------------------------------------------- environments
    def apply_env_registrations(self) -> None:
        """Put every plugin environment into gymnasium's registry (once per process).

        An id that gymnasium already knows with another entry point is a clash: the plugin's
        environment is reported (an error in strict mode) and gymnasium's stays.
        """
        if self._envs_applied:
            return
        self._envs_applied = True
        import gymnasium

        for reg in list(self.registry.all("env")):
            spec = gymnasium.registry.get(reg.name)
            if spec is not None:
                if _same_entry_point(spec.entry_point, reg.factory):
                    continue
                message = (f"environment {reg.name!r} from {reg.source} clashes with the id "
                           f"already in gymnasium's registry (entry point {spec.entry_point!r})")
                self.registry.remove("env", reg.name)
                self._fail(self.plugins[reg.source.plugin], message)
                continue
            gymnasium.register(
                id=reg.name,
                entry_point=reg.factory,
                kwargs=reg.metadata.get("kwargs") or {},
                max_episode_steps=reg.metadata.get("max_episode_steps"),
            )


def _same_entry_point(a: Any, b: Any) -> bool:
    def norm(x: Any) -> str:
        if isinstance(x, str):
            return x.replace(":", ".")
        return f"{getattr(x, '__module__', '')}.{getattr(x, '__qualname__', repr(x))}"

    return norm(a) == norm(b)


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded from entry points on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost().load_entry_points()
    return _HOST


def reset_host() -> None:
    """Forget the process-wide host (tests, and after installing a plugin at run time)."""
    global _HOST
    _HOST = None
