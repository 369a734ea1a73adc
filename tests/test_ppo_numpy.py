"""PPO's NumPy gradients (agents/ppo_numpy.py): the gradients and diagnostics of autograd on the
same loss, the target_kl stop, torch's clipping rule, and when runs use them."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import forgelab_cli, latest_state, read_metrics, run_experiment

from forgelab.agents.common import ActorCritic
from forgelab.agents.ppo_numpy import NumpyPPOGradients

CLIP, VF_COEF = 0.2, 0.5


def minibatch(policy: ActorCritic, space: gym.Space, seed: int, size: int = 96) -> tuple:
    """Observations, actions, old log-probs (ratios spread in and out of the clip range),
    advantages and returns."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((size, 5)).astype(np.float32)
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, size)
    else:
        actions = rng.standard_normal((size, *space.shape)).astype(np.float32)
    with torch.no_grad():
        logp, _, _ = policy.evaluate_actions(torch.from_numpy(obs), torch.from_numpy(actions))
    old_logp = (logp.numpy() + rng.normal(0, 0.4, size)).astype(np.float32)
    advantages = rng.standard_normal(size).astype(np.float32)
    returns = rng.standard_normal(size).astype(np.float32)
    return obs, actions, old_logp, advantages, returns


def autograd_reference(policy: ActorCritic, batch: tuple, ent_coef: float
                       ) -> tuple[list[torch.Tensor], dict[str, float]]:
    """PPO's loss written out with torch ops, and autograd's gradient of it."""
    obs, actions, old_logp, advantages, returns = (torch.from_numpy(x) for x in batch)
    for p in policy.parameters():
        p.grad = None
    logp, entropy, values = policy.evaluate_actions(obs, actions)
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - CLIP, 1 + CLIP) * advantages
    policy_loss = -torch.min(ratio * advantages, clipped).mean()
    value_loss = (values - returns).pow(2).mean()
    (policy_loss + VF_COEF * value_loss - ent_coef * entropy.mean()).backward()
    stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
             "entropy": entropy.mean().item(),
             "approx_kl": ((ratio - 1) - log_ratio).mean().item(),
             "clip_fraction": ((ratio - 1).abs() > CLIP).float().mean().item()}
    return [p.grad.clone() for p in policy.parameters()], stats


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))],
                         ids=["discrete", "box"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_numpy_gradients_equal_autograds(space: gym.Space, activation: str,
                                         ent_coef: float) -> None:
    torch.manual_seed(0)
    policy = ActorCritic(5, space, [32, 16], activation)
    gradients = NumpyPPOGradients(policy, activation)
    for seed in range(3):
        batch = minibatch(policy, space, seed)
        expected, expected_stats = autograd_reference(policy, batch, ent_coef)
        stats = gradients.step(*batch, CLIP, VF_COEF, ent_coef, diagnostics=True)
        for p, want in zip(policy.parameters(), expected, strict=True):
            assert p.grad is not None and p.grad.shape == want.shape
            assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-6 * want.abs().max())
        assert stats.keys() == expected_stats.keys()
        for name, value in expected_stats.items():
            assert stats[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
        assert 0 < stats["clip_fraction"] < 1  # both branches of the surrogate were exercised


def test_kl_limit_stops_before_any_gradient() -> None:
    torch.manual_seed(1)
    space = gym.spaces.Discrete(3)
    policy = ActorCritic(5, space, [16], "tanh")
    gradients = NumpyPPOGradients(policy, "tanh")
    batch = minibatch(policy, space, 0)
    kl = gradients.step(*batch, CLIP, VF_COEF, 0.0, diagnostics=True)["approx_kl"]
    before = [g.clone() for g in gradients.grad_tensors]
    torch.manual_seed(2)  # other weights: a stop must leave the last gradients untouched
    for p in policy.parameters():
        p.data.add_(torch.randn_like(p))
    assert gradients.step(*batch, CLIP, VF_COEF, 0.0, kl_limit=0.0) is None
    assert all(torch.equal(g, b) for g, b in zip(gradients.grad_tensors, before, strict=True))
    assert gradients.step(*minibatch(policy, space, 0), CLIP, VF_COEF, 0.0,
                          kl_limit=kl * 1e6) == {}


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, 1e3])
def test_numpy_clipping_follows_torchs_rule(max_norm: float) -> None:
    torch.manual_seed(3)
    space = gym.spaces.Box(-1, 1, (2,))
    policy = ActorCritic(5, space, [16, 16], "tanh")
    gradients = NumpyPPOGradients(policy, "tanh")
    gradients.step(*minibatch(policy, space, 0), CLIP, VF_COEF, 0.0)
    twins = [torch.nn.Parameter(p.detach().clone()) for p in policy.parameters()]
    for twin, g in zip(twins, gradients.grad_tensors, strict=True):
        twin.grad = g.clone()
    gradients.clip_grad_norm(max_norm)
    torch.nn.utils.clip_grad_norm_(twins, max_norm)
    for twin, g in zip(twins, gradients.grad_tensors, strict=True):
        assert torch.allclose(g, twin.grad, rtol=1e-5, atol=0)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in gradients.grad_tensors]))
    assert norm.item() <= max_norm * (1 + 1e-5)


def _ppo(*overrides: str) -> list[str]:
    return ["cartpole-ppo", "seed=0", "device=cpu", "train.total_steps=2048",
            "train.eval_every=1024", "train.eval_episodes=2", "train.video_every=null",
            "train.checkpoint_every=null", "tracking.mode=disabled", *overrides]


def test_auto_takes_numpy_where_it_applies_and_numpy_elsewhere_is_refused(tmp_path: Path) -> None:
    """``gradients: auto`` takes NumPy on the CPU and falls back to autograd where NumPy does
    not apply (clip_range_vf); the two give different, each reproducible, runs; asking for
    numpy where it cannot apply is a config error."""
    runs = {name: run_experiment(*_ppo(*extra)) for name, extra in {
        "auto": [], "auto again": [], "autograd": ["agent.gradients=autograd"],
        "vf clipped": ["agent.clip_range_vf=0.2"]}.items()}
    losses = {name: [r["train/value_loss"] for r in read_metrics(run) if "train/value_loss" in r]
              for name, run in runs.items()}
    assert losses["auto"] == losses["auto again"]  # the same seed, the same numbers
    assert losses["auto"] != losses["autograd"]  # (they differ in the last bits, then more)
    assert losses["auto"][0] == pytest.approx(losses["autograd"][0], rel=1e-3)
    assert all(np.isfinite(losses["vf clipped"]))

    out = tmp_path / "refused"
    refused = ["agent.gradients=numpy", "agent.clip_range_vf=0.2", f"output_dir={out}"]
    for dry_run in ([], ["--dry-run"]):
        result = forgelab_cli("run", *_ppo(*refused), *dry_run)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "agent.gradients: numpy does not apply here" in result.stderr
        assert "clip_range_vf" in result.stderr and "gradients: auto" in result.stderr
    assert not out.exists()  # refused before a run directory existed


def test_a_run_saved_before_the_gradients_option_resumes_with_autograd() -> None:
    """A run made before ``gradients`` existed (its config.yaml lists every other option)
    continues with autograd, the path it was made with: it ends with the parameters of an
    uninterrupted autograd run (constant schedules: annealing depends on the budget)."""
    from forgelab.core import runner

    same = ["agent.gradients=autograd", "agent.anneal_lr=false", "agent.anneal_clip_range=false",
            "train.checkpoint_every=1024"]
    straight = run_experiment(*_ppo(*same, "train.total_steps=2048"))
    old = run_experiment(*_ppo(*same, "train.total_steps=1024"))
    config = old / "config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if "gradients:" not in line))
    resumed = runner.resume(old, ["train.total_steps=2048"], show_progress=False)

    a, b = (latest_state(run)["component"] for run in (straight, resumed))
    assert a["step"] == b["step"] == 2048
    for name, value in a["policy"].items():
        assert torch.equal(value, b["policy"][name]), name
