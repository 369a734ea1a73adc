"""The plugin contract catches authors' mistakes, and the conformance kit catches broken
components (each check below fails on a real bug)."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import run_experiment, wandb_config, wandb_records

from forgelab.agents.random_agent import RandomAgent, RandomAgentConfig
from forgelab.core import hookimpl, pluginhost
from forgelab.core.errors import ForgelabError, PluginError
from forgelab.core.pluginhost import PluginHost
from forgelab.testing import check_component, parametrize_with_checks

HERE = Path(__file__).resolve()


def plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("in_test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def host_with(**hooks) -> tuple[PluginHost, pluginhost.PluginInfo]:
    host = PluginHost(strict=False, disabled=())
    info = host.add_plugin(plugin(**hooks), "mylab", "mylab-plugins", "0.3")
    return host, info


# ------------------------------------------------------------------------ registration
@pytest.mark.parametrize(("hook", "call", "expected"), [
    ("register_generative_models",
     lambda r: r("gmm", "x:y", options="x:Config"), "unknown keyword 'options' (did you mean "
     "'config'?)"),
    ("register_agents", lambda r: r("picky", "x:y", chek="x:check"),
     "unknown keyword 'chek' (did you mean 'check'?)"),
    ("register_envs", lambda r: r("mylab/Corridor-v0", "x:Env", max_episode_step=200),
     "unknown keyword 'max_episode_step' (did you mean 'max_episode_steps'?)"),
])
def test_register_rejects_unknown_keywords_naming_the_closest(hook, call, expected) -> None:
    line = inspect.getsourcelines(test_register_rejects_unknown_keywords_naming_the_closest)[1]
    host, info = host_with(**{hook: lambda register: call(register)})
    assert info.status == "failed"
    assert expected in info.error
    assert f"hook {hook} raised RegistrationError" in info.error
    assert f"{HERE}:" in info.error  # where the plugin called register
    assert int(info.error.rsplit(":", 1)[1].rstrip(")")) in range(line, line + 10)
    assert host.registry.names("agent") == host.registry.names("model") == []


def test_hook_errors_name_the_hook_file_and_line(capsys, monkeypatch) -> None:
    def register_envs(register):
        settings = {}
        register("mylab/Corridor-v0", "x:Env", kwargs={"length": settings["length"]})

    line = inspect.getsourcelines(register_envs)[1] + 2
    _, info = host_with(register_envs=register_envs)
    assert info.error == f"hook register_envs raised KeyError: 'length' (at {HERE}:{line})"
    assert capsys.readouterr().err == ""  # the traceback only with FORGELAB_DEBUG

    monkeypatch.setenv("FORGELAB_DEBUG", "1")
    host_with(register_envs=register_envs)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "settings[\"length\"]" in err


@pytest.mark.parametrize(("field", "value"), [
    ("factory", "forgelab.agents.random_agentt:RandomAgent"),
    ("config", "forgelab.agents.random_agent:RandomAgentConfg"),
    ("check", "forgelab.agents.sb3:check_experimentt"),
])
def test_strict_mode_imports_every_import_string(field: str, value: str) -> None:
    strings = {"factory": "forgelab.agents.random_agent:RandomAgent",
               "config": "forgelab.agents.random_agent:RandomAgentConfig", "check": None}
    strings[field] = value

    def register_agents(register):
        register("typo", strings["factory"], config=strings["config"], check=strings["check"],
                 description="x")

    lenient = PluginHost(strict=False, disabled=())
    assert lenient.add_plugin(plugin(register_agents=register_agents), "lab").status == "active"
    strict = PluginHost(strict=True, disabled=())
    with pytest.raises(PluginError, match=f"cannot import its {field} '{value}'"):
        strict.add_plugin(plugin(register_agents=register_agents), "lab")


def test_unknown_component_says_its_plugin_failed_or_is_disabled() -> None:
    def register_generative_models(register):
        register("gmm", "x:y", description="x")
        raise RuntimeError("boom")

    host, _ = host_with(register_generative_models=register_generative_models)
    with pytest.raises(ForgelabError) as failed:
        host.registry.get("model", "gmm")
    assert "model 'gmm' comes from plugin 'mylab' (mylab-plugins), which failed to load: " \
        "hook register_generative_models raised RuntimeError: boom" in failed.value.message

    disabled = PluginHost(strict=False, disabled={"mylab"})
    disabled.add_plugin(plugin(register_generative_models=register_generative_models), "mylab",
                        "mylab-plugins")
    with pytest.raises(ForgelabError, match="plugin 'mylab' .mylab-plugins. is installed but "
                       "disabled by FORGELAB_DISABLE_PLUGINS"):
        disabled.registry.get("model", "gmm")


def test_plugins_ship_experiments(tmp_path: Path, monkeypatch) -> None:
    from forgelab.core.config import available_experiments, find_experiment

    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "corridor-random.yaml").write_text(
        "agent: random\nenv: CartPole-v1\ntrain: {total_steps: 10}\n")
    host, info = host_with(register_experiments=lambda register: register(folder))
    assert info.experiments == ["corridor-random"]
    monkeypatch.setattr(pluginhost, "_HOST", host)
    monkeypatch.chdir(tmp_path)
    assert "corridor-random" in available_experiments()
    assert find_experiment("corridor-random") == folder / "corridor-random.yaml"

    _, missing = host_with(register_experiments=lambda register: register(tmp_path / "nope"))
    assert missing.status == "failed" and "no such YAML file or folder" in missing.error


def test_wandb_config_records_where_each_component_came_from() -> None:
    run_dir = run_experiment("cartpole-random", "train.total_steps=100", "train.eval_episodes=1",
                             "train.video_every=1000000")
    components = wandb_config(wandb_records(run_dir))["components"]
    assert components["agent"]["plugin"] == "random"
    assert components["agent"]["distribution"] == "forgelab"
    assert components["env"] == {"name": "CartPole-v1", "plugin": None,
                                 "distribution": "gymnasium",
                                 "version": components["env"]["version"]}
    assert components["env"]["version"]


# ------------------------------------------------------------------------------- the kit
class Unseeded(RandomAgent):
    """Draws from an unseeded generator: two runs with one seed differ."""

    def __init__(self, options, ctx) -> None:
        super().__init__(options, ctx)
        self.rng = np.random.default_rng()


class ForgetsItsEnvs(RandomAgent):
    """Leaves the envs out of its checkpoint: a resumed run starts new episodes."""

    def state_dict(self):
        return {**super().state_dict(), "envs": None}


class HonestlyInexact(ForgetsItsEnvs):
    exact_resume = False


class IgnoresStop(RandomAgent):
    """Never sees the stop request (as if fit() did not check ctx.stop_requested)."""

    def __init__(self, options, ctx) -> None:
        super().__init__(options, ctx)
        ctx.request_stop = lambda signum=None: None


class Opaque:
    pass


class PicklesAnObject(RandomAgent):
    """Puts an arbitrary object into its state: not loadable with weights_only=True."""

    def state_dict(self):
        return {**super().state_dict(), "extra": Opaque()}


def kit_host(*agents: type) -> PluginHost:
    def register_agents(register):
        for cls in agents:
            register(cls.__name__.lower(), cls, config=RandomAgentConfig,
                     description=cls.__doc__ or "x", conformance={"env": "CartPole-v1"})

    host = PluginHost(strict=True, disabled=())
    host.load_entry_points()
    host.add_plugin(plugin(register_agents=register_agents), "kit")
    return host


@pytest.mark.parametrize(("cls", "check", "message"), [
    (Unseeded, "check_same_seed_same_result", "the same seed gave different final states"),
    (ForgetsItsEnvs, "check_sigterm_resume", "differs from an uninterrupted run"),
    (IgnoresStop, "check_sigterm_resume", "not 'interrupted'"),
    (PicklesAnObject, "check_checkpoint_round_trip", "torch.load(weights_only=True)"),
])
def test_the_kit_catches_a_broken_agent(cls, check, message, tmp_path: Path) -> None:
    report = check_component(cls.__name__.lower(), host=kit_host(cls), checks=[check],
                             workdir=tmp_path, on_fail=None)
    [result] = report.results
    assert result.status == "failed" and message in result.detail, result.detail


def test_the_kit_names_the_plugin_as_the_missing_env_namespace(tmp_path: Path) -> None:
    host = PluginHost(strict=False, disabled=())
    host.add_plugin(plugin(register_envs=lambda register: register(
        "Corridor-v0", "gymnasium.envs.classic_control:CartPoleEnv", description="x")), "acme")
    report = check_component("Corridor-v0", host=host, checks=["check_env_id_and_time_limit"],
                             workdir=tmp_path, on_fail=None)
    [result] = report.results
    assert result.status == "failed" and "use 'acme/Corridor-v0'" in result.detail, result.detail


def test_exact_resume_is_checked_only_where_claimed(tmp_path: Path) -> None:
    host = kit_host(HonestlyInexact)
    report = check_component("honestlyinexact", host=host, checks=["check_sigterm_resume"],
                             workdir=tmp_path, on_fail=None)
    assert report.ok and "no exact-resume claim" in report.results[0].detail


def test_expected_failures_need_a_reason_and_are_strict(tmp_path: Path) -> None:
    host = kit_host(Unseeded, RandomAgent)
    with pytest.raises(ValueError, match="needs a reason"):
        check_component("unseeded", host=host, expected_failed_checks={
            "check_same_seed_same_result": " "})
    with pytest.raises(ValueError, match="did you mean 'check_sigterm_resume'"):
        check_component("unseeded", host=host, expected_failed_checks={
            "check_sigterm_resum": "x"})
    expected = {"check_same_seed_same_result": "draws from OS entropy on purpose"}
    failing = check_component("unseeded", host=host, checks=list(expected), workdir=tmp_path / "a",
                              expected_failed_checks=expected)  # raises nothing: an xfail
    assert failing.results[0].status == "xfail"
    passing = check_component("randomagent", host=host, checks=list(expected),
                              workdir=tmp_path / "b", expected_failed_checks=expected,
                              on_fail=None)
    assert passing.results[0].status == "xpass" and not passing.ok


def test_the_kit_flags_heavy_plugin_imports(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "heavy_plugin.py").write_text(
        "import torch\nfrom forgelab.core import hookimpl\n\n@hookimpl\n"
        "def register_datasets(register):\n"
        "    register('heavy', 'forgelab.generative.toy:moons', "
        "config='forgelab.generative.toy:MoonsConfig', description='x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import heavy_plugin

    host = PluginHost(strict=True, disabled=())
    host.add_plugin(heavy_plugin, "heavy")
    report = check_component("heavy", host=host, checks=["check_plugin_import_is_light"],
                             on_fail=None)
    assert report.results[0].status == "failed"
    assert "imports torch" in report.results[0].detail


def test_parametrize_with_checks_names_each_check_and_marks_expected_failures() -> None:
    mark = parametrize_with_checks(
        ["random", "forgelab/GridWorld-v0"],
        expected_failed_checks={"random": {"check_sigterm_resume": "a reason"}})
    params = mark.args[1]
    ids = [p.id for p in params]
    assert "random-check_sigterm_resume" in ids
    assert "forgelab/GridWorld-v0-check_sb3_env_checker" in ids
    assert "forgelab/GridWorld-v0-check_sigterm_resume" not in ids  # chosen by kind
    [xfail] = [p for p in params if p.marks]
    assert xfail.id == "random-check_sigterm_resume"
    assert xfail.marks[0].kwargs["strict"] is True
    assert xfail.marks[0].kwargs["reason"] == "a reason"


def test_cli_check_runs_the_kit_and_rejects_unknown_names() -> None:
    from conftest import forgelab_cli

    ok = forgelab_cli("plugins", "--check", "forgelab/PointMass-v0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  env     forgelab/PointMass-v0" in ok.stdout
    assert "check_gymnasium_env_checker" in ok.stdout and "0 failed" in ok.stdout
    unknown = forgelab_cli("plugins", "--check", "gridworl")
    assert unknown.returncode == 2 and "unknown plugin or component 'gridworl'" in unknown.stderr
    listed = unknown.stderr.split("Available plugins and components: ")[1].split("\n")[0]
    assert listed.count("random,") == 1  # a plugin and a component of one name: listed once



def test_pytest11_fixtures(forgelab_host, forgelab_check, forgelab_run, monkeypatch) -> None:
    """forgelab's pytest11 entry point gives every test suite these fixtures."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # a developer's setting: the fixture overrides it
    assert forgelab_host is not pluginhost.get_host()  # a host of its own
    assert forgelab_host.registry.find("env", "forgelab/GridWorld-v0") is not None
    report = forgelab_check("forgelab/GridWorld-v0")
    assert report.ok and len(report.results) == 7
    run_dir = forgelab_run({"agent": "random", "env": "CartPole-v1",
                            "train": {"total_steps": 20, "eval_episodes": 1}})
    assert run_dir.parent.parent == Path.cwd() / "runs"  # tmp_path
    assert "mode: disabled" in (run_dir / "config.yaml").read_text()
    assert not (run_dir / "wandb").exists()  # no W&B run, offline or online


# Core is family-neutral: it finds agents, models, envs and plugins only through the registry
# and the families' support modules (import strings), and it never touches gymnasium.
_CORE_MUST_NOT_IMPORT = ("gymnasium", "gym", "forgelab.agents", "forgelab.envs",
                         "forgelab.generative", "forgelab.plugins")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (top level, functions, TYPE_CHECKING)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            if node.module == "forgelab":  # from forgelab import agents
                found += [(node.lineno, f"forgelab.{alias.name}") for alias in node.names]
    return found


def test_core_never_imports_gymnasium_or_the_families() -> None:
    core = HERE.parent.parent / "core"
    files = sorted(core.rglob("*.py"))
    assert len(files) > 20  # the real core/, not an empty folder
    bad = [f"{path.relative_to(core.parent)}:{line}: {module}"
           for path in files for line, module in _imports(path)
           if any(module == name or module.startswith(name + ".")
                  for name in _CORE_MUST_NOT_IMPORT)]
    assert not bad, "core/ must stay family-neutral:\n" + "\n".join(bad)
