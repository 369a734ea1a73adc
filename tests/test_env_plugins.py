"""Environments as plugins: `register_envs` puts ids into gymnasium's registry with their source,
clashes name both sources, and `forgelab list envs` shows plugin and gymnasium environments."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import pytest
from conftest import forgelab_cli

from forgelab.core import hookimpl
from forgelab.core.errors import PluginError
from forgelab.core.pluginhost import PluginHost
from forgelab.envs.registration import apply_env_registrations

CARTPOLE = "gymnasium.envs.classic_control.cartpole:CartPoleEnv"


class ShortCartPolePlugin:
    """A third-party plugin: CartPole with the Sutton & Barto reward and a 20-step limit."""

    def __init__(self, env_id: str, entry_point: str = CARTPOLE) -> None:
        self.env_id = env_id
        self.entry_point = entry_point

    @hookimpl
    def register_envs(self, register):
        register(self.env_id, self.entry_point, kwargs={"sutton_barto_reward": True},
                 max_episode_steps=20, description="CartPole, 20 steps")


@pytest.fixture
def forget_ids() -> Iterator[list[str]]:
    """Ids a test registers into gymnasium's (process-wide) registry, removed afterwards."""
    ids: list[str] = []
    yield ids
    for env_id in ids:
        gymnasium.registry.pop(env_id, None)


def test_registered_env_works_with_gymnasium_make_and_records_its_source(forget_ids):
    forget_ids.append("mylab/ShortCartPole-v0")
    host = PluginHost(strict=True)
    host.add_plugin(ShortCartPolePlugin("mylab/ShortCartPole-v0"), "mylab",
                    distribution="mylab-envs", version="0.1")
    assert "mylab/ShortCartPole-v0" not in gymnasium.registry
    apply_env_registrations(host)

    reg = host.registry.get("env", "mylab/ShortCartPole-v0")
    assert (reg.source.plugin, reg.source.distribution) == ("mylab", "mylab-envs")
    assert host.plugins["mylab"].registered == [("env", "mylab/ShortCartPole-v0")]
    env = gymnasium.make("mylab/ShortCartPole-v0")
    assert env.spec.max_episode_steps == 20
    assert env.unwrapped._sutton_barto_reward is True  # the registered default kwargs
    env.reset(seed=0)
    steps, truncated, terminated = 0, False, False
    while not (truncated or terminated):
        _, reward, terminated, truncated, _ = env.step(steps % 2)  # alternate: stays up
        steps += 1
    assert (steps, truncated) == (20, True)
    assert reward == 0.0  # Sutton & Barto reward: 0 per step until failure


def test_clash_with_gymnasiums_own_id_names_both_sources():
    other = "gymnasium.envs.classic_control.acrobot:AcrobotEnv"
    host = PluginHost(strict=False)
    host.add_plugin(ShortCartPolePlugin("CartPole-v1", other), "mylab")
    apply_env_registrations(host)
    info = host.plugins["mylab"]
    assert info.status == "failed"
    assert "'mylab'" in info.error and CARTPOLE in info.error  # both sources
    assert host.registry.find("env", "CartPole-v1") is None
    assert gymnasium.registry["CartPole-v1"].entry_point == CARTPOLE  # gymnasium's stays

    strict = PluginHost(strict=True)
    strict.add_plugin(ShortCartPolePlugin("CartPole-v1", other), "mylab")
    with pytest.raises(PluginError, match="CartPole-v1.*mylab|mylab.*CartPole-v1"):
        apply_env_registrations(strict)


def test_same_entry_point_as_gymnasium_is_not_a_clash():
    # forgelab's own envs are registered both by `import forgelab.envs` and by the plugin
    # (the plugin's registrations are their one table: `import forgelab.envs` applies them).
    import forgelab.envs
    import forgelab.plugins.envs

    host = PluginHost(strict=True)
    host.add_plugin(forgelab.plugins.envs, "envs", distribution="forgelab")
    apply_env_registrations(host)  # would raise in strict mode on a clash
    regs = list(host.registry.all("env"))
    assert {"forgelab/GridWorld-v0", "forgelab/PointMass-v0"} <= {reg.name for reg in regs}
    for reg in regs:
        assert reg.source.plugin == "envs"
        spec = gymnasium.spec(reg.name)  # registered by `import forgelab.envs`
        assert (spec.entry_point, spec.max_episode_steps) == (
            reg.factory, reg.metadata["max_episode_steps"])
    assert not hasattr(forgelab.envs, "BUILTIN_ENVS")  # no second table


def test_two_plugins_registering_one_id_is_an_error_naming_both(forget_ids):
    forget_ids.append("mylab/Twice-v0")
    host = PluginHost(strict=False)
    host.add_plugin(ShortCartPolePlugin("mylab/Twice-v0"), "first")
    second = host.add_plugin(ShortCartPolePlugin("mylab/Twice-v0"), "second",
                             distribution="second-dist")
    assert second.status == "failed"
    assert "'first'" in second.error and "'second'" in second.error
    assert host.registry.get("env", "mylab/Twice-v0").source.plugin == "first"

    strict = PluginHost(strict=True)
    strict.add_plugin(ShortCartPolePlugin("mylab/Twice-v0"), "first")
    with pytest.raises(PluginError, match="first.*second"):
        strict.add_plugin(ShortCartPolePlugin("mylab/Twice-v0"), "second")


def _install_plugin(site: Path) -> dict[str, str]:
    """A real installed third-party plugin: a module plus a .dist-info with its entry point."""
    site.mkdir()
    (site / "mylab_envs.py").write_text(textwrap.dedent(f'''
        from forgelab.core import hookimpl

        @hookimpl
        def register_envs(register):
            register("mylab/ShortCartPole-v0", "{CARTPOLE}", max_episode_steps=20,
                     description="CartPole, 20 steps")
    '''))
    dist = site / "mylab_envs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[forgelab]\nmylab = mylab_envs\n")
    return {"PYTHONPATH": str(site)}


def test_cli_lists_plugin_and_gymnasium_envs_by_source(tmp_path):
    env = _install_plugin(tmp_path / "site")
    result = forgelab_cli("list", "envs", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["envs"]}
    assert rows["mylab/ShortCartPole-v0"]["plugin"] == "mylab"
    assert rows["mylab/ShortCartPole-v0"]["distribution"] == "mylab-envs"
    assert rows["forgelab/GridWorld-v0"]["plugin"] == "envs"
    assert rows["forgelab/PointMass-v0"]["distribution"] == "forgelab"
    assert rows["CartPole-v1"]["plugin"] == "gymnasium"
    assert "observation_space" not in rows["CartPole-v1"]

    details = forgelab_cli("list", "envs", "--details", env=env)
    assert details.returncode == 0, details.stderr
    lines = details.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "forgelab/GridWorld-v0" in line)
    assert "observation_space: Box(0.0, 1.0, (25,), float32)" in lines[at + 1]
    assert "action_space: Discrete(4)" in lines[at + 2]
    at = next(i for i, line in enumerate(lines) if "mylab/ShortCartPole-v0" in line)
    assert "[mylab (mylab-envs)]" in lines[at]
    assert "action_space: Discrete(2)" in lines[at + 2]
