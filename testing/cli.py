"""``forgelab plugins --check [NAME]``: the conformance kit on the command line.

Without NAME it checks every component of the installed third-party plugins (forgelab's own
components are checked by forgelab's test suite; name one of its plugins, e.g. ``--check
agents``, to run them here). Exit code 0 when every check passes, 1 when one fails, 2 for a name
that matches nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from forgelab.core.errors import ForgelabError, unknown_name_message

_MARK = {"passed": "PASS ", "failed": "FAIL ", "xfail": "XFAIL", "xpass": "XPASS"}


def _targets(host: Any, name: str | None) -> list[Any]:
    """The registrations to check: a plugin's, one component, or every third-party one."""
    from forgelab.core.pluginhost import BUILTIN_DISTRIBUTION

    if name:
        if name in host.plugins:
            info = host.plugins[name]
            if info.status != "active":
                raise ForgelabError(f"plugin {name!r} is {info.status}"
                                    + (f": {info.error}" if info.error else ""),
                                    hint="`forgelab plugins` shows why")
            return [host.registry.get(kind, component) for kind, component in info.registered]
        found = [reg for reg in host.registry if reg.name == name]
        if not found:
            names = [*host.plugins, *(reg.name for reg in host.registry)]
            raise ForgelabError(unknown_name_message("plugin or component", name, names,
                                                     plural="plugins and components"),
                                hint="`forgelab plugins` lists plugins and what they register")
        return found
    return [reg for reg in host.registry if reg.source.distribution != BUILTIN_DISTRIBUTION]


def cmd_check(name: str | None, as_json: bool) -> int:
    """Run the kit over ``name`` (or every third-party component); print one line per check."""
    from forgelab.core.pluginhost import get_host
    from forgelab.testing import check_component

    host = get_host()
    # Without NAME every third-party plugin is under test, so one that did not load fails.
    failed_plugins = host.failures if not name else []
    for info in host.failures:
        print(f"{'FAIL ' if not name else 'note:'} plugin {info.name!r} "
              f"({info.distribution or info.module}) did not load: {info.error}",
              file=sys.stderr)
    targets = _targets(host, name)
    if not targets:
        print("no third-party plugin components to check; `forgelab plugins --check NAME` "
              "checks one plugin or component (forgelab's own too, e.g. --check random)")
        return 1 if failed_plugins else 0

    def show(result: Any) -> None:
        if not as_json:
            note = f"  {result.detail}" if result.detail else ""
            print(f"{_MARK[result.status]} {result.kind:<7} {result.component:<24} "
                  f"{result.check:<32} {result.seconds:5.1f}s{note}", flush=True)

    results = []
    for reg in targets:
        report = check_component(reg.name, kind=reg.kind, host=host, on_fail=None,
                                 progress=show)
        results += report.results
    failed = [r for r in results if not r.ok]
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        unloaded = (f"; {len(failed_plugins)} plugin(s) failed to load"
                    if failed_plugins else "")
        print(f"{len(results)} checks on {len(targets)} components: "
              f"{len(results) - len(failed)} passed, {len(failed)} failed{unloaded}")
    return 1 if failed or failed_plugins else 0
