"""The RL family's support functions (:class:`forgelab.core.family.FamilySupport`): what the
runner asks of an agent's experiment before the run (its env's spaces) and what an agent
receives as ``ctx.inputs`` (the env builders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgelab.core.component import RunContext
    from forgelab.core.config import ExperimentConfig
    from forgelab.core.pluginhost import PluginHost
    from forgelab.core.registry import Registration


PLAYED_FRAMES = 2000  # frames kept per recorded episode of ``forgelab eval --video`` and ``watch``


def check_inputs(config: ExperimentConfig, host: PluginHost, registration: Registration) -> Any:
    """Build the experiment's env once (with its wrappers) and return its
    ``(observation_space, action_space)`` for the agent's check; an unknown id, bad kwargs or
    an unknown wrapper is a ConfigError."""
    from forgelab.envs.building import check_env_spec
    from forgelab.envs.registration import apply_env_registrations

    apply_env_registrations(host)
    return check_env_spec(config.env)


def run_inputs(config: ExperimentConfig, ctx: RunContext) -> Any:
    """The env builders of the run (training vector env, single envs, evaluation env)."""
    from forgelab.envs.building import Environments

    return Environments(config.env, ctx.seed)


def input_origin(kind: str, name: str) -> dict[str, Any] | None:
    """Where a gymnasium id no plugin registered comes from (gymnasium's own registry, or a
    package that registers on import), for ``run.json``'s provenance."""
    if kind != "env":
        return None
    from forgelab.envs.registration import env_distribution

    return env_distribution(name)


def catalog_rows(kind: str, host: PluginHost, details: bool) -> list[dict[str, Any]]:
    """``forgelab list envs``: every id in gymnasium's registry (plugin envs put there first),
    as rows ``{name, kind, description, plugin, distribution, entry_point}``; with ``details``
    each row also has the env's ``observation_space`` and ``action_space`` (or why it is
    ``unavailable``: an optional extra such as box2d, mujoco or atari not installed)."""
    if kind != "env":
        return []
    import gymnasium

    from forgelab.envs.registration import apply_env_registrations

    apply_env_registrations(host)
    rows = [{"name": env_id, "kind": "env", "description": "", "plugin": "gymnasium",
             "distribution": "gymnasium", "entry_point": str(spec.entry_point)}
            for env_id, spec in sorted(gymnasium.registry.items())]
    if details:
        import warnings

        warnings.simplefilter("ignore")  # gymnasium warns about every out-of-date version
        for row in rows:
            try:
                env = gymnasium.make(row["name"])
                row["observation_space"] = str(env.observation_space)
                row["action_space"] = str(env.action_space)
                env.close()
            except Exception as exc:  # optional extras (box2d, mujoco, atari) not installed
                row["unavailable"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return rows


def evaluate_episodes(component: Any, ctx: RunContext, step: int, episodes: int | None,
                      videos: int | None, stochastic: bool) -> dict[str, Any]:
    """``forgelab eval RUN``: play ``episodes`` episodes (default ``train.eval_episodes``) from
    the evaluation seeds with the agent's ``actions()``, record the first ``videos`` (default
    1), and log them at ``step`` (``eval/*``, ``rollout/video``). Returns the metrics, with the
    written videos' paths under ``videos``. An agent without ``actions()`` evaluates itself."""
    from forgelab.agents.evaluation import render_fps, run_episodes_batched
    from forgelab.core.errors import ForgelabError

    act = getattr(component, "actions", None)
    if act is None:  # the agent evaluates itself: the episode flags cannot apply
        asked = [flag for flag, given in (("--episodes", episodes is not None),
                                          ("--video", bool(videos)), ("--stochastic", stochastic))
                 if given]
        if asked:
            raise ForgelabError(f"agent {ctx.config.component!r} cannot play episodes for "
                                f"{' / '.join(asked)}: its plugin does not implement actions()",
                                hint="`forgelab eval RUN` without them runs the agent's own "
                                "evaluate()")
        return component.evaluate()
    episodes = episodes or ctx.config.train.eval_episodes
    videos = 1 if videos is None else videos
    envs = []
    try:
        for _ in range(min(episodes, ctx.config.train.eval_envs)):
            envs.append(ctx.inputs.make_eval_env(render_mode="rgb_array" if videos else None))
        result = run_episodes_batched(envs, lambda obs: act(obs, deterministic=not stochastic),
                                      episodes, seed=ctx.inputs.eval_seed, record=videos,
                                      max_frames=PLAYED_FRAMES)
        fps = render_fps(envs[0])
    finally:
        for env in envs:
            env.close()
    metrics: dict[str, Any] = result.metrics("eval")
    ctx.tracker.log(metrics, global_step=step)
    paths = [str(ctx.tracker.log_video("rollout/video", frames, fps=fps,
                                       caption=f"episode {i}, return {result.returns[i]:.1f}",
                                       global_step=step, episode=i))
             for i, frames in enumerate(result.videos)]
    if paths:
        metrics["videos"] = paths
    return metrics


def watch_episodes(policy: Any, episodes: int, stochastic: bool,
                   render_mode: str) -> tuple[list[float], list[Any], int]:
    """``forgelab watch``: a loaded :class:`~forgelab.core.loading.Policy` plays ``episodes``
    episodes from the evaluation seeds in ``render_mode`` (``human``: a window; otherwise every
    episode is recorded). Returns (returns, frames of each recorded episode, frames/second)."""
    from forgelab.agents.evaluation import render_fps, run_episodes

    env = policy.make_env(render_mode=render_mode)
    try:
        result = run_episodes(env, lambda obs: policy.predict(obs, deterministic=not stochastic),
                              episodes, seed=policy.inputs.eval_seed,
                              record=0 if render_mode == "human" else episodes,
                              max_frames=PLAYED_FRAMES)
        return result.returns, result.videos, render_fps(env)
    finally:
        env.close()
