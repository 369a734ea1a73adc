"""``forgelab list`` lists a plugin family's components as it lists agents and models: under
``list all`` and ``list <kind>s``, with their options and the family's catalog rows."""

from __future__ import annotations

import json
import types
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from forgelab.core import hookimpl, pluginhost
from forgelab.core.cli import list_rows, main
from forgelab.core.config import ExperimentConfig
from forgelab.core.errors import ForgelabError
from forgelab.core.family import Family
from forgelab.core.pluginhost import PluginHost


# This module is the family's experiment class and support module ("test_family_listing:...");
# listing asks the support module for catalog_rows only (no run here: no check_inputs/run_inputs).
class TutorExperiment(ExperimentConfig):
    component_key: ClassVar[str] = "learner"
    learner: str
    text: str


def catalog_rows(kind: str, host: Any, details: bool) -> list[dict[str, Any]]:
    """The texts the family's library knows beyond the registered ones."""
    return [{"name": "lorem", "kind": kind, "description": "placeholder text",
             "plugin": "tutoring-library", "distribution": None}]


class RoteOptions(BaseModel):
    repetitions: int = Field(3, description="times each line is read")


TUTORING = Family(name="tutoring", component_key="learner", unit="step",
                  budget_key="total_steps", axes=(("step", ("train/*",)),),
                  inputs=(("text", "text"),), experiment="test_family_listing:TutorExperiment",
                  support="test_family_listing")


def _host() -> PluginHost:
    plugin = types.ModuleType("tutoring_plugin")
    plugin.register_families = hookimpl(lambda register: register(TUTORING))

    def components(register: Any) -> None:
        register("learner", "rote", object, config=RoteOptions, description="reads by rote")
        register("text", "alphabet", object, description="a to z")

    plugin.register_components = hookimpl(components)
    host = PluginHost(strict=True, disabled=()).load_entry_points()
    host.add_plugin(plugin, "tutoring")
    return host


def test_a_plugin_familys_kinds_are_listed_with_the_builtin_ones() -> None:
    host = _host()
    everything = list_rows(host, "all")
    assert list(everything) == ["agents", "models", "envs", "datasets", "learners", "texts",
                                "experiments"]
    rote = next(row for row in everything["learners"] if row["name"] == "rote")
    assert rote["plugin"] == "tutoring" and rote["description"] == "reads by rote"
    assert rote["options"] == [{"name": "repetitions", "type": "int", "default": 3,
                                "description": "times each line is read"}]
    # `list all` leaves the catalogs out (gymnasium's alone is hundreds of rows); `list texts`
    # has the registered texts, then the family's own
    assert [row["name"] for row in everything["texts"]] == ["alphabet"]
    texts = list_rows(host, "texts")
    assert list(texts) == ["texts"]
    assert [(row["name"], row["plugin"]) for row in texts["texts"]] == [
        ("alphabet", "tutoring"), ("lorem", "tutoring-library")]
    assert list(list_rows(host, "learners")) == ["learners"]
    assert list(list_rows(host, "experiments")) == ["experiments"]
    with pytest.raises(ForgelabError, match="did you mean 'learners'"):
        list_rows(host, "lerners")


def test_the_command_line_accepts_a_plugin_familys_plural(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(pluginhost, "_HOST", _host())  # the process-wide host the CLI reads
    assert main(["list", "learners", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in listing["learners"]] == ["rote"]
    assert main(["list", "learners"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("learners:\n") and "rote" in out and "repetitions: int = 3" in out
    assert main(["list", "lerners"]) != 0
    assert "did you mean 'learners'" in capsys.readouterr().err
