"""Discovers and loads plugins, isolating each one.

Loading follows conda's plugin loader: every entry point is loaded in its own try/except, a
failure is reported by plugin name and skipped, and a duplicate name is reported with the
distributions that caused it. ``FORGELAB_STRICT_PLUGINS=1`` turns every such report into an
error (for CI and plugin authors); ``FORGELAB_DISABLE_PLUGINS=a,b`` blocks plugins by name.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pluggy

from forgelab.core import hookspecs
from forgelab.core.errors import PluginError, closest
from forgelab.core.family import Family, family_for
from forgelab.core.registry import (
    DuplicateRegistration,
    Kind,
    Registration,
    Registry,
    Source,
    import_string,
    validate_registration,
)

ENTRY_POINT_GROUP = "forgelab"
STRICT_ENV = "FORGELAB_STRICT_PLUGINS"
DISABLE_ENV = "FORGELAB_DISABLE_PLUGINS"
DEBUG_ENV = "FORGELAB_DEBUG"  # print the traceback of every plugin failure
BUILTIN_DISTRIBUTION = "forgelab"

# hook name -> kind of component it registers
HOOKS: dict[str, Kind] = {
    "register_agents": "agent",
    "register_generative_models": "model",
    "register_envs": "env",
    "register_datasets": "dataset",
}

EXPERIMENTS_HOOK = "register_experiments"
# Components of any family, the kind named at each call: how a plugin family registers its own.
COMPONENTS_HOOK = "register_components"
# The keywords each kind's `register` accepts (hookspecs.Register* Protocols document them).
KEYWORDS: dict[Kind, tuple[str, ...]] = {
    "agent": ("config", "description", "check", "conformance"),
    "model": ("config", "description", "check", "conformance"),
    "dataset": ("config", "description", "conformance"),
    "env": ("kwargs", "max_episode_steps", "reward_threshold", "nondeterministic", "description"),
}
# Words authors reach for that are not close in spelling to the keyword they mean.
_SYNONYMS = {"options": "config", "options_class": "config", "schema": "config",
             "settings": "config", "validate": "check", "validator": "check",
             "desc": "description", "doc": "description", "help": "description",
             "env_kwargs": "kwargs", "time_limit": "max_episode_steps"}
_HOST_FILES = (str(Path(__file__).resolve().parent),)  # frames in forgelab.core: not the plugin

Status = Literal["active", "disabled", "failed"]
# What a plugin may raise at import or registration without taking the command down: a plugin
# calling sys.exit() or raising KeyboardInterrupt is reported and skipped like any other.
CONTAINED = (Exception, SystemExit, KeyboardInterrupt)


def _reraise_signal(exc: BaseException) -> None:
    """A real SIGTERM (forgelab's Terminated) is not the plugin's doing: let it through."""
    from forgelab.core.errors import Terminated

    if isinstance(exc, Terminated):
        raise exc


def known_hooks() -> list[str]:
    """Every hook the spec module declares (a plugin's @hookimpl must match one of them)."""
    marker = hookspecs.PROJECT_NAME + "_spec"
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), marker))


def debug_enabled() -> bool:
    return _truthy(os.environ.get(DEBUG_ENV))


def _plugin_frame(tb: Any) -> str | None:
    """``file:line`` of the innermost traceback frame outside forgelab's core (the plugin's)."""
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(_HOST_FILES)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _caller() -> str | None:
    """``file:line`` of the plugin code that called ``register`` (for later error messages)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_HOST_FILES):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else None


class _HookFailure(Exception):
    """A plugin's hook failed; the message already names the hook and the place."""


class RegistrationError(TypeError):
    """A ``register`` call with an unknown keyword or wrong arguments."""


@dataclass(frozen=True)
class ExperimentFile:
    """An experiment YAML that a plugin ships (``register_experiments``)."""

    name: str
    path: Path
    source: Source


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
    experiments: list[str] = field(default_factory=list)
    traceback: str | None = None  # of the failure (shown with FORGELAB_DEBUG=1)
    #: what the plugin registered before it failed (so "unknown agent" can name the plugin)
    attempted: list[tuple[Kind, str]] = field(default_factory=list)

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
            "experiments": list(self.experiments),
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
        self.registry.explain = self.explain_missing
        self.plugins: dict[str, PluginInfo] = {}
        self.experiments: dict[str, ExperimentFile] = {}
        self._done: set[str] = set()  # keys of first_time()
        self._families: dict[str, Family] | None = None

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
        except CONTAINED as exc:  # broad on purpose: any import error must not take us down
            _reraise_signal(exc)
            where = _plugin_frame(exc.__traceback__)
            self._fail(info, f"failed to import {info.module!r}: {type(exc).__name__}: {exc}"
                       + (f" (at {where})" if where else ""), exc)
            return
        unknown = self._unknown_hooks(plugin)
        if unknown:
            hints = []
            for hook in unknown:
                guess = closest(hook, known_hooks())
                hints.append(f"{hook!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
            self._fail(info, "implements unknown hook " + ", ".join(hints)
                       + f"; known hooks: {', '.join(known_hooks())}")
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
            if callable(value) and hasattr(value, marker) and attr not in known_hooks():
                names.append(attr)
        return names

    # -------------------------------------------------------------- registration
    def _collect(self, info: PluginInfo) -> None:
        """Call this plugin's hooks, then add its registrations all together or not at all."""
        pending: list[tuple[Registration, str | None]] = []
        experiments: list[ExperimentFile] = []
        try:
            for hook_name in [*HOOKS, COMPONENTS_HOOK, EXPERIMENTS_HOOK]:
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    if impl.plugin_name != info.name:
                        continue
                    if hook_name == EXPERIMENTS_HOOK:
                        register = self._experiments_callable(info, experiments)
                    elif hook_name == COMPONENTS_HOOK:
                        register = self._components_callable(info, pending)
                    else:
                        register = self._register_callable(HOOKS[hook_name], info, pending)
                    try:
                        impl.function(register=register)
                    except CONTAINED as exc:  # sys.exit() in a hook too
                        _reraise_signal(exc)
                        where = _plugin_frame(exc.__traceback__)
                        raise _HookFailure(
                            f"hook {hook_name} raised {type(exc).__name__}: {exc}"
                            + (f" (at {where})" if where else "")) from exc
            info.attempted = [(reg.kind, reg.name) for reg, _ in pending]
            seen: dict[tuple[Kind, str], Registration] = {}
            for reg, origin in pending:
                key = (reg.kind, reg.name)
                if key in seen:
                    raise DuplicateRegistration(reg, seen[key])
                seen[key] = reg
                try:
                    validate_registration(reg)
                except ValueError as exc:
                    raise _HookFailure(f"{exc}" + (f" (registered at {origin})" if origin
                                                    else "")) from exc
                existing = self.registry.find(reg.kind, reg.name)
                if existing is not None:
                    raise DuplicateRegistration(reg, existing)
            for experiment in experiments:
                existing_file = self.experiments.get(experiment.name)
                if existing_file is not None and existing_file.path != experiment.path:
                    raise _HookFailure(
                        f"experiment {experiment.name!r} is shipped twice: by "
                        f"{existing_file.source} and by {experiment.source}")
            if self.strict:
                self._import_everything([reg for reg, _ in pending])
        except Exception as exc:
            info.attempted = [(reg.kind, reg.name) for reg, _ in pending]
            self.pm.unregister(name=info.name)
            message = str(exc) if isinstance(exc, (DuplicateRegistration, _HookFailure)) \
                else f"{type(exc).__name__}: {exc}"
            self._fail(info, message, exc.__cause__ or exc)
            return
        for reg, _ in pending:
            self.registry.add(reg)
            info.registered.append((reg.kind, reg.name))
        for experiment in experiments:
            self.experiments.setdefault(experiment.name, experiment)
            info.experiments.append(experiment.name)

    @staticmethod
    def _import_everything(registrations: list[Registration]) -> None:
        """Strict mode: import every factory / config / check / entry-point string now, so a
        misspelt ``"pkg.gmm:GaussianMixtureModel"`` is reported at load time, not at run time."""
        problems = []
        for reg in registrations:
            targets = [("factory" if reg.kind != "env" else "entry point", reg.factory),
                       ("config", reg.config), ("check", reg.metadata.get("check"))]
            for what, target in targets:
                if not isinstance(target, str):
                    continue
                try:
                    import_string(target)
                except Exception as exc:  # whatever importing the plugin's code raises
                    problems.append(f"{reg.kind} {reg.name!r}: cannot import its {what} "
                                    f"{target!r} ({type(exc).__name__}: {exc})")
        if problems:
            raise _HookFailure("; ".join(problems))

    def _register_callable(self, kind: Kind, info: PluginInfo,
                           pending: list[tuple[Registration, str | None]]) -> Callable[..., None]:
        """The ``register`` a hook receives (signatures: the Protocols in hookspecs)."""
        source = info.source
        allowed = KEYWORDS.get(kind, KEYWORDS["agent"])  # a plugin family's components too

        def reject_unknown(call: str, extra: dict[str, Any]) -> None:
            if not extra:
                return
            parts = []
            for key in sorted(extra):
                guess = _SYNONYMS.get(key) if _SYNONYMS.get(key) in allowed else None
                guess = guess or closest(key, allowed)
                parts.append(f"{key!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
            raise RegistrationError(
                f"{call}: unknown keyword {', '.join(parts)}; {kind} registrations accept "
                f"{', '.join(allowed)}")

        if kind == "env":

            def register_env(env_id: str, entry_point: Any, *, kwargs: dict | None = None,
                             max_episode_steps: int | None = None,
                             reward_threshold: float | None = None,
                             nondeterministic: bool = False, description: str = "",
                             **extra: Any) -> None:
                reject_unknown(f"register({env_id!r})", extra)
                metadata = {"kwargs": dict(kwargs or {}), "max_episode_steps": max_episode_steps}
                if reward_threshold is not None:
                    metadata["reward_threshold"] = reward_threshold
                if nondeterministic:
                    metadata["nondeterministic"] = True
                pending.append((Registration(
                    kind="env", name=env_id, factory=entry_point, config=None,
                    description=description, source=source, metadata=metadata), _caller()))

            return register_env

        def register(name: str, factory: Any, *, config: Any = None, description: str = "",
                     **extra: Any) -> None:
            reject_unknown(f"register({name!r})", {k: v for k, v in extra.items()
                                                   if k not in allowed})
            conformance = extra.get("conformance")
            if conformance is not None and not isinstance(conformance, dict):
                raise RegistrationError(f"register({name!r}): conformance must be a mapping of "
                                        f"experiment keys, not {type(conformance).__name__}")
            metadata = {k: v for k, v in extra.items() if v is not None}
            pending.append((Registration(
                kind=kind, name=name, factory=factory, config=config,
                description=description, source=source, metadata=metadata), _caller()))

        return register

    def _components_callable(self, info: PluginInfo,
                             pending: list[tuple[Registration, str | None]]
                             ) -> Callable[..., None]:
        """``register(kind, name, factory, **keywords)`` of ``register_components``: a
        component of any family (``kind`` is the family's component key)."""

        def register(kind: str, name: str, factory: Any, **keywords: Any) -> None:
            if not isinstance(kind, str) or kind in ("env", "dataset"):
                raise RegistrationError(f"register({kind!r}, {name!r}): kind is a family's "
                                        "component key (envs and datasets have their own hooks)")
            self._register_callable(kind, info, pending)(name, factory, **keywords)

        return register

    def _experiments_callable(self, info: PluginInfo,
                              found: list[ExperimentFile]) -> Callable[..., None]:
        def register(path: str | Path, **extra: Any) -> None:
            if extra:
                raise RegistrationError(f"register({str(path)!r}): unknown keyword "
                                        f"{', '.join(map(repr, sorted(extra)))}; "
                                        "register_experiments takes only a path")
            path = Path(path)
            if path.is_dir():
                files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            elif path.is_file() and path.suffix in {".yaml", ".yml"}:
                files = [path]
            else:
                raise RegistrationError(f"register({str(path)!r}): no such YAML file or folder")
            for file in files:
                found.append(ExperimentFile(file.stem, file.resolve(), info.source))

        return register

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        info.status = "failed"
        info.error = error
        if exc is not None:
            info.traceback = "".join(traceback.format_exception(exc))
            if debug_enabled():
                print(f"plugin {info.name!r} failed ({DEBUG_ENV} is set):\n{info.traceback}",
                      file=sys.stderr)
        if self.strict:
            raise PluginError(
                f"plugin {info.name!r} ({info.distribution or info.module}) {error}",
                hint=f"fix or uninstall it; {DISABLE_ENV}={info.name} skips it "
                f"(strict because {STRICT_ENV} is set)",
            )

    # ------------------------------------------------------------------- families
    def families(self) -> dict[str, Family]:
        """Every family the plugins register (``register_families``), by name; a plugin that
        fails to register one is reported and skipped, a second family for the same name or
        component key is refused with the plugin that registered the first."""
        if self._families is not None:
            return self._families
        found: dict[str, Family] = {}
        owners: dict[str, str] = {}
        for impl in self.pm.hook.register_families.get_hookimpls():

            def register(family: Any, _plugin: str = impl.plugin_name) -> None:
                if not isinstance(family, Family):
                    raise RegistrationError(f"register({family!r}): a family is a "
                                            "forgelab.core.family.Family")
                for other in found.values():
                    if family.name == other.name or family.component_key == other.component_key:
                        raise RegistrationError(
                            f"family {family.name!r} ({family.component_key}:) clashes with "
                            f"family {other.name!r} of plugin {owners[other.name]!r}")
                found[family.name] = family
                owners[family.name] = _plugin

            try:
                impl.function(register=register)
            except CONTAINED as exc:
                _reraise_signal(exc)
                info = self.plugins.get(impl.plugin_name)
                message = f"failed to register a family: {type(exc).__name__}: {exc}"
                if info is not None:
                    self._fail(info, message, exc)
                else:
                    print(f"warning: plugin {impl.plugin_name!r} {message}", file=sys.stderr)
        self._families = found
        return found

    def family(self, config: Any) -> Family:
        """The family of an experiment's component (by the key it sets: ``agent``, ``model``)."""
        return family_for(config, self.families())

    def provenance(self, config: Any) -> dict[str, dict[str, Any]]:
        """Which plugin, distribution and version provided each component of an experiment
        (recorded in run.json and the W&B config)."""
        family = self.family(config)
        wanted = [(family.component_key, config.component), *family.input_names(config)]
        out = {}
        for kind, name in wanted:
            reg = self.registry.find(kind, name)
            if reg is not None:
                out[kind] = {"name": name, "plugin": reg.source.plugin,
                             "distribution": reg.source.distribution,
                             "version": reg.source.version}
                continue
            # An input no plugin registered (a gymnasium env of gymnasium's own registry):
            # the family's support module may know where it comes from.
            origin = getattr(family.load_support(), "input_origin", None)
            found = origin(kind, name) if origin is not None else None
            if found is not None:
                out[kind] = {"name": name, "plugin": None, **found}
        return out

    def explain_missing(self, kind: Kind, name: str) -> str | None:
        """Why ``name`` may be missing: a plugin that registered it (or may have) failed or
        is disabled. Used by the registry's "unknown agent" message."""
        for info in self.plugins.values():
            if (kind, name) in info.attempted and info.status == "failed":
                return (f"{kind} {name!r} comes from plugin {info.name!r} "
                        f"({info.distribution or info.module}), which failed to load: "
                        f"{info.error}")
        notes = []
        for info in self.plugins.values():
            dist = info.distribution or info.module
            if info.status == "disabled":
                notes.append(f"plugin {info.name!r} ({dist}) is installed but disabled by "
                             f"{DISABLE_ENV}")
            elif info.status == "failed" and not info.attempted:
                notes.append(f"plugin {info.name!r} ({dist}) is installed but failed to load, "
                             f"so its components are missing: {info.error}")
        return "; ".join(notes) or None

    @property
    def failures(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.status == "failed"]

    # ------------------------------------------------------------ for families
    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is asked on this host, then False: work a family's
        support does once per host (e.g. putting plugin envs into gymnasium's registry,
        :func:`forgelab.envs.registration.apply_env_registrations`)."""
        if key in self._done:
            return False
        self._done.add(key)
        return True

    def refuse(self, reg: Registration, message: str) -> None:
        """Drop a registration found unusable after loading (an env id that clashes with one
        a library already has) and report its plugin as failed (an error in strict mode)."""
        self.registry.remove(reg.kind, reg.name)
        self._fail(self.plugins[reg.source.plugin], message)


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
