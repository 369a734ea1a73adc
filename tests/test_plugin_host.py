"""Plugin isolation: every failure is reported by name and skipped, never fatal."""

from __future__ import annotations

import types

import pytest
from pydantic import BaseModel

from forgelab.core import hookimpl
from forgelab.core.errors import PluginError
from forgelab.core.pluginhost import PluginHost


def make_plugin(**hooks) -> types.ModuleType:
    """A fresh plugin module whose hooks are the given functions."""
    module = types.ModuleType("in_test_plugin")
    for name, fn in hooks.items():
        def hook(register, _fn=fn):
            return _fn(register)

        setattr(module, name, hookimpl(hook))
    return module


class Options(BaseModel):
    lr: float = 0.1


def good_agents(register):
    register("good", "forgelab.agents.random_agent:RandomAgent", config=Options,
             description="fine")


def test_builtins_come_through_the_entry_point_group() -> None:
    host = PluginHost(strict=False, disabled=()).load_entry_points()
    random_agent = host.registry.get("agent", "random")
    assert random_agent.source.plugin == "random"
    assert random_agent.source.distribution == "forgelab"
    assert host.plugins["random"].status == "active"
    assert ("agent", "random") in host.plugins["random"].registered


def test_plugin_raising_in_a_hook_is_skipped_and_others_work() -> None:
    def explode(register):
        register("half", "x:y")
        raise RuntimeError("boom")

    host = PluginHost(strict=False, disabled=())
    host.add_plugin(make_plugin(register_agents=explode), "exploding")
    host.add_plugin(make_plugin(register_agents=good_agents), "fine")
    assert host.plugins["exploding"].status == "failed"
    assert "RuntimeError: boom" in host.plugins["exploding"].error
    assert host.registry.names("agent") == ["good"]  # nothing half-registered by the failure


@pytest.mark.parametrize(
    ("register_call", "message"),
    [
        (lambda r: r("BadName", "x:y"), "invalid agent name 'BadName'"),
        (lambda r: r("ok", 42), "factory must be a callable"),
        (lambda r: r("ok", "x:y", config=dict), "config must be a pydantic BaseModel"),
        (lambda r: r("ok", "x:y", description="a") or r("ok", "x:y"), "registered twice"),
    ],
)
def test_invalid_registrations_are_reported(register_call, message: str) -> None:
    host = PluginHost(strict=False, disabled=())
    host.add_plugin(make_plugin(register_agents=register_call), "sloppy")
    assert host.plugins["sloppy"].status == "failed"
    assert message in host.plugins["sloppy"].error
    assert host.registry.names("agent") == []


def test_duplicate_names_across_plugins_name_both_sources() -> None:
    host = PluginHost(strict=False, disabled=())
    host.add_plugin(make_plugin(register_agents=good_agents), "first", "dist-one", "1.0")
    host.add_plugin(make_plugin(register_agents=good_agents), "second", "dist-two", "2.0")
    error = host.plugins["second"].error
    assert host.plugins["second"].status == "failed"
    assert "'first' (dist-one 1.0)" in error and "'second' (dist-two 2.0)" in error
    assert host.registry.get("agent", "good").source.plugin == "first"


def test_hook_name_typo_is_reported_with_the_closest_hook() -> None:
    host = PluginHost(strict=False, disabled=())
    host.add_plugin(make_plugin(register_agent=good_agents), "typo")
    assert host.plugins["typo"].status == "failed"
    assert "'register_agent'" in host.plugins["typo"].error
    assert "did you mean 'register_agents'" in host.plugins["typo"].error


def test_wrong_hook_signature_is_reported() -> None:
    host = PluginHost(strict=False, disabled=())
    module = types.ModuleType("badargs")
    module.register_agents = hookimpl(lambda registrar: None)
    host.add_plugin(module, "badargs")
    assert host.plugins["badargs"].status == "failed"
    assert "invalid hook implementation" in host.plugins["badargs"].error


def test_strict_mode_turns_a_skip_into_an_error() -> None:
    host = PluginHost(strict=True, disabled=())
    with pytest.raises(PluginError, match="plugin 'typo'"):
        host.add_plugin(make_plugin(register_agent=good_agents), "typo")


def test_disabled_plugins_are_not_loaded() -> None:
    host = PluginHost(strict=False, disabled={"fine"})
    host.add_plugin(make_plugin(register_agents=good_agents), "fine")
    assert host.plugins["fine"].status == "disabled"
    assert host.registry.names("agent") == []
