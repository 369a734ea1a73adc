"""forgelab's conformance kit for plugin authors (scikit-learn's ``check_estimator``, for
agents, generative models, environments and datasets).

Named checks, chosen by what a component is, run the component through the real runner with
tiny budgets: registration, import weight, fit, checkpoint round trip, same seed same result,
SIGTERM stop and resume, evaluation and sampling contracts, gymnasium's and SB3's env checkers,
dataset splits. Every built-in component passes them in forgelab's own suite.

Three ways in::

    from forgelab.testing import check_component, parametrize_with_checks

    check_component("my-agent")                       # raises ConformanceError on a failure

    @parametrize_with_checks(["my-agent", "mylab/Corridor-v0"])
    def test_conformance(check):                      # one pytest test per (component, check)
        check()

and ``forgelab plugins --check [NAME]`` on the command line. A check may be expected to fail
only with a reason: ``expected_failed_checks={"check_sigterm_resume": "why"}``; an expected
failure that passes is reported (strict, like scikit-learn's ``xfail_strict``).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forgelab.testing.checks import CHECKS, Check, checks_for
from forgelab.testing.harness import CheckFailure, Subject

__all__ = ["CHECKS", "CheckFailure", "CheckResult", "ConformanceError", "Report",
           "check_component", "parametrize_with_checks", "select_checks"]

Status = Literal["passed", "failed", "xfail", "xpass"]


@dataclass
class CheckResult:
    """The outcome of one check on one component."""

    component: str
    kind: str
    check: str
    status: Status
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "xfail")

    def as_dict(self) -> dict[str, Any]:
        return {"component": self.component, "kind": self.kind, "check": self.check,
                "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 3)}


@dataclass
class Report:
    """All results of :func:`check_component`."""

    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]


class ConformanceError(AssertionError):
    """One or more checks failed; the message lists each with its reason."""

    def __init__(self, report: Report) -> None:
        lines = [f"{r.component} {r.check}: {r.status}: {r.detail}" for r in report.failures]
        super().__init__("conformance checks failed:\n  " + "\n  ".join(lines))
        self.report = report


def _validate_expected(expected: Mapping[str, str] | None) -> dict[str, str]:
    expected = dict(expected or {})
    for name, reason in expected.items():
        if name not in CHECKS:
            from forgelab.core.errors import closest

            guess = closest(name, CHECKS)
            raise ValueError(f"expected_failed_checks names unknown check {name!r}"
                             + (f"; did you mean {guess!r}?" if guess else ""))
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"expected_failed_checks[{name!r}] needs a reason (a non-empty "
                             "string): say why the component cannot pass it")
    return expected


def _registration(name: str, host: Any, kind: str | None = None) -> Any:
    from forgelab.core.errors import ForgelabError, unknown_name_message
    from forgelab.core.registry import KINDS

    kinds = [kind] if kind else list(KINDS)
    found = [reg for k in kinds if (reg := host.registry.find(k, name)) is not None]
    if not found:
        names = [r.name for r in host.registry]
        raise ForgelabError(unknown_name_message("component", name, names),
                            hint="`forgelab list` shows every registered component")
    if len(found) > 1:
        raise ForgelabError(f"{name!r} names a {found[0].kind} and a {found[1].kind}; pass kind=")
    return found[0]


def select_checks(reg: Any, checks: Iterable[str] | None = None) -> list[Check]:
    """The checks that apply to a registration (optionally only those named in ``checks``)."""
    chosen = checks_for(reg)
    if checks is not None:
        wanted = set(checks)
        unknown = wanted - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown checks: {sorted(unknown)}; known: {sorted(CHECKS)}")
        chosen = [c for c in chosen if c.name in wanted]
    return chosen


def run_check(subject: Subject, chk: Check, expected_reason: str | None = None) -> CheckResult:
    """Run one check and classify the outcome (an unexpected exception is a failure too)."""
    start = time.perf_counter()
    try:
        note = chk.fn(subject) or ""
        status: Status = "passed" if expected_reason is None else "xpass"
        if expected_reason is not None:
            note = f"expected to fail ({expected_reason}) but passed: remove the expectation"
    except CheckFailure as exc:
        status, note = ("failed", str(exc)) if expected_reason is None else \
            ("xfail", f"{expected_reason} ({exc})")
    except Exception as exc:  # the component raised: a failure, with where it happened
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        detail = (f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                  f"(at {frame.filename}:{frame.lineno})")
        status, note = ("failed", detail) if expected_reason is None else \
            ("xfail", f"{expected_reason} ({detail})")
    return CheckResult(subject.name, subject.kind, chk.name, status, note,
                       time.perf_counter() - start)


def check_component(name: str, *, kind: str | None = None, checks: Iterable[str] | None = None,
                    overrides: Mapping[str, Any] | None = None,
                    expected_failed_checks: Mapping[str, str] | None = None,
                    host: Any = None, workdir: str | Path | None = None,
                    on_fail: Literal["raise"] | None = "raise",
                    progress: Callable[[CheckResult], None] | None = None) -> Report:
    """Run every check that applies to the registered component ``name``.

    :param kind: ``agent``, ``model``, ``env`` or ``dataset`` when the name is ambiguous.
    :param checks: only these checks (names from :data:`CHECKS`).
    :param overrides: experiment keys merged over the kit's defaults and the registration's
        ``conformance=`` (e.g. ``{"agent_options": {"n_steps": 8}}``,
        ``{"dataset_options": {"path": "..."}}``).
    :param expected_failed_checks: ``{check name: reason}``; a reason is required.
    :param host: the plugin host (default: the installed plugins).
    :param workdir: where runs are written (default: a temporary folder, removed afterwards).
    :param on_fail: ``"raise"`` raises :class:`ConformanceError` after running every check;
        None returns the report.
    :param progress: called with each result as it is ready.
    """
    from forgelab.core.pluginhost import get_host

    expected = _validate_expected(expected_failed_checks)
    host = host or get_host()
    reg = _registration(name, host, kind)
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="forgelab-check-")) if temporary else Path(workdir)
    report = Report()
    try:
        subject = Subject(reg, host, root, overrides)
        for chk in select_checks(reg, checks):
            result = run_check(subject, chk, expected.get(chk.name))
            report.results.append(result)
            if progress is not None:
                progress(result)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    if on_fail == "raise" and not report.ok:
        raise ConformanceError(report)
    return report


# ------------------------------------------------------------------------------ pytest
_SUBJECTS: dict[tuple[str, str], Subject] = {}


class BoundCheck:
    """One (component, check) pair for :func:`parametrize_with_checks`; call it to run it."""

    def __init__(self, name: str, kind: str, check: str, overrides: Mapping[str, Any],
                 expected_reason: str | None) -> None:
        self.name, self.kind, self.check = name, kind, check
        self.overrides = dict(overrides)
        self.expected_reason = expected_reason

    def __repr__(self) -> str:
        return f"{self.name}-{self.check}"

    def subject(self) -> Subject:
        """Shared by every check of the component in this process (runs are reused)."""
        import json

        from forgelab.core.pluginhost import get_host

        key = (f"{self.kind}:{self.name}", json.dumps(self.overrides, sort_keys=True,
                                                      default=str))
        if key not in _SUBJECTS:
            host = get_host()
            workdir = Path(tempfile.mkdtemp(prefix="forgelab-check-"))
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
            _SUBJECTS[key] = Subject(_registration(self.name, host, self.kind), host, workdir,
                                     self.overrides)
        return _SUBJECTS[key]

    def __call__(self) -> CheckResult:
        result = run_check(self.subject(), CHECKS[self.check], self.expected_reason)
        # "xfail" raises (pytest's strict xfail mark counts it as expected); "xpass" returns,
        # which the strict mark turns into a failure.
        if result.status in ("failed", "xfail"):
            raise CheckFailure(f"{self.name} {self.check}: {result.detail}")
        return result


def parametrize_with_checks(components: Iterable[str], *,
                            overrides: Mapping[str, Mapping[str, Any]] | None = None,
                            expected_failed_checks: Mapping[str, Mapping[str, str]] | None = None,
                            checks: Iterable[str] | None = None):
    """A ``pytest.mark.parametrize`` over every (component, check) pair, with ids such as
    ``my-agent-check_sigterm_resume`` (select with ``-k``). The test takes one argument,
    ``check``, and calls it.

    :param components: registered names (agents, models, envs, datasets).
    :param overrides: ``{component: experiment keys}`` (see :func:`check_component`).
    :param expected_failed_checks: ``{component: {check: reason}}``; they become strict xfails.
    :param checks: only these checks.
    """
    import pytest

    from forgelab.core.pluginhost import get_host

    host = get_host()
    overrides = dict(overrides or {})
    expected = {name: _validate_expected(reasons)
                for name, reasons in dict(expected_failed_checks or {}).items()}
    params = []
    for name in components:
        reg = _registration(name, host)
        for chk in select_checks(reg, checks):
            reason = expected.get(name, {}).get(chk.name)
            bound = BoundCheck(name, reg.kind, chk.name, overrides.get(name, {}), reason)
            marks = [pytest.mark.xfail(strict=True, reason=reason, raises=CheckFailure)] \
                if reason else []
            params.append(pytest.param(bound, id=f"{name}-{chk.name}", marks=marks))
    return pytest.mark.parametrize("check", params)
