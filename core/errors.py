"""User-facing errors: one readable message, a hint at the fix, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ForgelabError(Exception):
    """An error caused by the user's input (config, names, files, plugins).

    The CLI prints ``error: <message>`` (and ``hint: <hint>``) and exits with code 2.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(ForgelabError):
    """A bad experiment file, override or option value."""


class ResourceError(ForgelabError):
    """The machine cannot do what was asked: the disk is full or read-only, or the memory a
    setting needs does not exist (exit code 4)."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception (outside training, where it asks the run to stop), so
    the same clean-up as Ctrl-C runs and the process exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class PluginError(ForgelabError):
    """A plugin that failed to load or registered something invalid (strict mode only)."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """Return the closest match to ``word`` among ``choices``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, choices: Iterable[str],
                         plural: str | None = None) -> str:
    """"unknown agent 'dqm'; did you mean 'dqn'? Available agents: a, b, c" (each choice once;
    ``plural``: the choices' name when it is not ``kind`` + s)."""
    choices = sorted(set(choices))
    guess = closest(name, choices)
    message = f"unknown {kind} {name!r}" + (f"; did you mean {guess!r}?" if guess else ".")
    shown = ", ".join(choices) if choices else "(none registered)"
    return f"{message} Available {plural or kind + 's'}: {shown}"
