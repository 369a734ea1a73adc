"""Typed registration records and the registry that holds them.

Everything a plugin registers becomes a :class:`Registration`: the CLI lists it, the config
validates against its ``config`` schema, and the runner builds it through its ``factory``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from forgelab.core.errors import ForgelabError, unknown_name_message

# The built-in kinds; a plugin family adds its own (its component key, e.g. "learner").
Kind = str
KINDS: tuple[Kind, ...] = ("agent", "model", "env", "dataset")
# Plural names used by the CLI (`forgelab list agents`) and the hooks.
PLURALS: dict[str, Kind] = {
    "agents": "agent", "models": "model", "envs": "env", "datasets": "dataset"}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
# Gymnasium ids look like "namespace/Name-v0": mixed case is part of the convention there.
_ENV_ID_RE = re.compile(r"^([A-Za-z0-9_\-.]+/)?[A-Za-z0-9_\-.]+-v\d+$")


@dataclass(frozen=True)
class Source:
    """Where a registration came from: the plugin name and its distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution:
            return f"plugin {self.plugin!r} ({self.distribution} {self.version or ''})".replace(
                " )", ")"
            )
        return f"plugin {self.plugin!r}"


def import_string(target: str) -> Any:
    """Import ``"package.module:attribute"`` (or ``"package.module.attribute"``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep:
        module_name, _, attribute = target.rpartition(".")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Registration:
    """One registered component.

    :param kind: ``agent``, ``model``, ``env`` or ``dataset``.
    :param name: lowercase name used in experiment files (gymnasium id for envs).
    :param factory: callable, or ``"module:attr"`` string imported on first use.
    :param config: pydantic model class of the component's options (or import string), or None.
    :param description: one line for ``forgelab list``.
    :param source: the plugin and distribution it came from.
    :param metadata: kind-specific extras (for envs: entry point, kwargs, episode limit).
    """

    kind: Kind
    name: str
    factory: Callable[..., Any] | str
    config: type | str | None
    description: str
    source: Source
    metadata: dict[str, Any] = field(default_factory=dict)

    def load_factory(self) -> Callable[..., Any]:
        return self._load(self.factory, "factory")

    def load_check(self) -> Callable[..., None] | None:
        """The optional ``check(options, config, spaces)`` given at registration (see hookspecs)."""
        check = self.metadata.get("check")
        return None if check is None else self._load(check, "check")

    def load_config(self) -> type | None:
        if self.config is None:
            return None
        return self._load(self.config, "config")

    def _load(self, target: Any, what: str) -> Any:
        if not isinstance(target, str):
            return target
        try:
            return import_string(target)
        except Exception as exc:  # an installed plugin whose code is broken
            raise ForgelabError(
                f"{self.kind} {self.name!r} from {self.source}: cannot import its {what} "
                f"{target!r}: {type(exc).__name__}: {exc}",
                hint="reinstall or fix the plugin, or disable it with "
                f"FORGELAB_DISABLE_PLUGINS={self.source.plugin}",
            ) from exc


def validate_registration(reg: Registration) -> None:
    """Raise ValueError when a plugin registers something malformed."""
    if reg.kind == "env":
        if not isinstance(reg.name, str) or not _ENV_ID_RE.match(reg.name):
            raise ValueError(f"invalid environment id {reg.name!r}; expected 'namespace/Name-v0'")
    elif not isinstance(reg.name, str) or not _NAME_RE.match(reg.name):
        raise ValueError(
            f"invalid {reg.kind} name {reg.name!r}; names are lowercase letters, digits, '-', '_'"
        )
    if not (callable(reg.factory) or (isinstance(reg.factory, str) and reg.factory.strip())):
        raise ValueError(f"{reg.kind} {reg.name!r}: factory must be a callable or 'module:attr'")
    if reg.config is not None and not isinstance(reg.config, str):
        from pydantic import BaseModel

        if not (isinstance(reg.config, type) and issubclass(reg.config, BaseModel)):
            raise ValueError(
                f"{reg.kind} {reg.name!r}: config must be a pydantic BaseModel subclass"
            )
    check = reg.metadata.get("check")
    if check is not None and not (callable(check) or isinstance(check, str)):
        raise ValueError(f"{reg.kind} {reg.name!r}: check must be a callable or 'module:attr'")
    if not isinstance(reg.description, str):
        raise ValueError(f"{reg.kind} {reg.name!r}: description must be a string")


class Registry:
    """All registrations by kind and name."""

    def __init__(self) -> None:
        self._items: dict[Kind, dict[str, Registration]] = {kind: {} for kind in KINDS}
        #: set by the plugin host: why a name may be missing (a failed or disabled plugin)
        self.explain: Callable[[Kind, str], str | None] | None = None

    def add(self, reg: Registration) -> None:
        existing = self._items.setdefault(reg.kind, {}).get(reg.name)
        if existing is not None:
            raise DuplicateRegistration(reg, existing)
        self._items[reg.kind][reg.name] = reg

    def find(self, kind: Kind, name: str) -> Registration | None:
        return self._items.get(kind, {}).get(name)

    def remove(self, kind: Kind, name: str) -> None:
        self._items.get(kind, {}).pop(name, None)

    def kinds(self) -> list[Kind]:
        """The built-in kinds, then those plugin families added."""
        return [*KINDS, *sorted(k for k in self._items if k not in KINDS)]

    def get(self, kind: Kind, name: str) -> Registration:
        try:
            return self._items[kind][name]
        except KeyError:
            message = unknown_name_message(kind, name, self._items.get(kind, {}))
            why = self.explain(kind, name) if self.explain is not None else None
            raise ForgelabError(
                message + (f". Note: {why}" if why else ""),
                hint=f"`forgelab list {kind}s` shows every registered {kind}"
                + ("; `forgelab plugins` shows the failed or disabled plugin" if why else ""),
            ) from None

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._items.get(kind, {}))

    def all(self, kind: Kind) -> list[Registration]:
        return [self._items[kind][name] for name in self.names(kind)]

    def __iter__(self) -> Iterator[Registration]:
        for kind in self.kinds():
            yield from self.all(kind)


class DuplicateRegistration(ValueError):
    """Two plugins registered the same name; the message names both sources."""

    def __init__(self, new: Registration, existing: Registration) -> None:
        super().__init__(
            f"{new.kind} {new.name!r} is registered twice: by {existing.source} and by {new.source}"
        )
        self.new = new
        self.existing = existing
