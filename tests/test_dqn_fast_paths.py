"""DQN's and PPO's overhead cuts compute exactly what the torch calls they replace compute (so a
seed's learning curve is unchanged; checked on whole runs' metrics.jsonl when they were made)."""

from __future__ import annotations

import copy

import pytest
import torch

from forgelab.agents.dqn import QNetwork, clip_grad_norm
from forgelab.core.device import fast_adam


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])  # below, around and above the clip norm
def test_clip_grad_norm_equals_torch(scale: float) -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in [(64, 4), (64,), (2, 64), (2,)]]
    grads = [torch.randn(p.shape) * scale for p in params]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, t, g in zip(params, twins, grads, strict=True):
        p.grad, t.grad = g.clone(), g.clone()
    clip_grad_norm(params, 10.0)
    torch.nn.utils.clip_grad_norm_(twins, 10.0, foreach=True)
    assert all(torch.equal(p.grad, t.grad) for p, t in zip(params, twins, strict=True))
    assert scale < 1 or not torch.equal(params[0].grad, grads[0])  # it did clip


@pytest.mark.parametrize("rarely_clipped", [False, True])
def test_clip_grad_norm_equals_torch_over_many_norms(rarely_clipped: bool) -> None:
    # the CPU path computes the coefficient from the read-back norm in float32: it must match
    # torch's tensor arithmetic bit for bit at every scale, clipped or not; rarely_clipped's
    # NumPy bound must hand every norm near max_norm to that computation
    torch.manual_seed(2)
    near = [0.13 * (1 + k * 1e-4) for k in range(-12, 13)]  # ‖g‖ within ±0.1% of max_norm
    for max_norm in (0.5, 10.0, 0.3):
        for scale in torch.logspace(-6, 4, 60).tolist() + near:
            params = [torch.nn.Parameter(torch.randn(s)) for s in [(8, 4), (8,), (1, 8)]]
            twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
            for p, t in zip(params, twins, strict=True):
                p.grad = torch.randn(p.shape) * scale
                t.grad = p.grad.clone()
            if scale in near:  # rescale the gradients to ‖g‖ = max_norm · scale / 0.13
                total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
                for p, t in zip(params, twins, strict=True):
                    p.grad *= max_norm * scale / 0.13 / total
                    t.grad = p.grad.clone()
            clip_grad_norm(params, max_norm, rarely_clipped=rarely_clipped)
            torch.nn.utils.clip_grad_norm_(twins, max_norm, foreach=True)
            assert all(torch.equal(p.grad, t.grad) for p, t in zip(params, twins, strict=True))


def test_fast_adam_equals_torch_fused_adam() -> None:
    """The direct kernel call gives torch's Adam's parameters and state exactly, through a
    changing learning rate, a parameter without a gradient (the fallback), weight decay and a
    state reload."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin.load_state_dict(net.state_dict())
    ours = fast_adam(net.parameters(), lr=1e-2, eps=1e-5, weight_decay=1e-3)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-5, weight_decay=1e-3, fused=True)
    for step in range(12):
        x = torch.randn(32, 4)
        for model, opt in ((net, ours), (twin, theirs)):
            for group in opt.param_groups:
                group["lr"] = 1e-2 * (1 - step / 12)
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
            if step == 5:
                model[2].bias.grad = None  # Adam.step's own path for this one
            opt.step()
        if step == 8:  # a reload (a copy, as from a checkpoint) replaces the state tensors
            ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
            net.load_state_dict(twin.state_dict())
        for p, t in zip(net.parameters(), twin.parameters(), strict=True):
            assert torch.equal(p, t)
            assert all(torch.equal(ours.state[p][k], theirs.state[t][k])
                       for k in ("step", "exp_avg", "exp_avg_sq"))


def test_fast_adam_runs_step_hooks() -> None:
    net = torch.nn.Linear(3, 1)
    opt = fast_adam(net.parameters(), lr=1e-3)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    for _ in range(3):
        net(torch.randn(5, 3)).sum().backward()
        opt.step()
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_q_network_forward_equals_its_sequential_body(activation: str) -> None:
    torch.manual_seed(1)
    net = QNetwork(4, 3, [32, 16], activation, dueling=True)
    obs = torch.randn(7, 4)
    h = net.body(obs)  # the nn.Sequential the direct calls stand in for
    q = net.head(h)
    expected = net.value(h) + q - q.mean(dim=1, keepdim=True)
    assert torch.equal(net(obs), expected)


def test_one_env_epsilon_greedy_draws_what_the_batched_rule_draws() -> None:
    """With one env (DQN's usual setting) ``act`` draws scalars: the same numbers from the
    generator, in the same order, as the size-1 arrays of the rule for a batch of envs."""
    from types import SimpleNamespace

    import numpy as np

    from forgelab.agents.dqn import DQN

    greedy = np.array([2])
    agent = SimpleNamespace(n_envs=1, n_actions=3, rng=np.random.default_rng(5),
                            greedy=lambda obs: greedy)
    reference = np.random.default_rng(5)
    for k in range(3000):
        epsilon = (k % 11) / 10
        random_actions = reference.integers(3, size=1)
        expected = np.where(reference.random(1) < epsilon, random_actions, greedy)
        assert DQN.act(agent, np.zeros((1, 4)), epsilon).tolist() == expected.tolist()
    assert agent.rng.random() == reference.random()  # the streams are still in step


def test_td_stats_do_not_depend_on_when_they_are_read() -> None:
    """The TD loss and Q statistics kept as tensors are summed phase by phase as the per-phase
    reads did (float32 within a phase, float64 across phases): reading them after every phase,
    or once for many, or with a checkpoint in between, gives the same logged values."""
    from types import SimpleNamespace

    import numpy as np

    from forgelab.agents.dqn import DQN

    torch.manual_seed(4)
    phases = [1, 1, 3, 1, 128, 1, 1, 7]
    steps = [(torch.rand(()) * 3, torch.randn(32) * 10) for _ in range(sum(phases))]

    def stats(read_after: set[int]) -> list[float]:
        agent = SimpleNamespace(_losses=[], _q_taken=[], _phases=[], _stats=np.zeros(3))
        done = 0
        for k, count in enumerate(phases):
            for loss, q in steps[done:done + count]:
                agent._losses.append(loss)
                agent._q_taken.append(q)
            agent._phases.append(count)
            done += count
            if k in read_after:
                DQN._fold_stats(agent)
        DQN._fold_stats(agent)
        return agent._stats.tolist()

    # what reading after every phase gave before (a one-step phase's values as they are)
    expected, done = np.zeros(3), 0
    for count in phases:
        losses = [loss for loss, _ in steps[done:done + count]]
        means = [q.mean() for _, q in steps[done:done + count]]
        pair = (torch.stack([losses[0], means[0]]) if count == 1 else
                torch.stack([torch.stack(losses).sum(), torch.stack(means).sum()]))
        expected += (*pair.tolist(), count)
        done += count
    assert stats(set(range(len(phases)))) == expected.tolist()
    assert stats(set()) == stats({2, 5}) == expected.tolist()
    sparse = [1] * 40  # every phase one step: the single read
    phases[:] = sparse
    assert stats(set()) == stats(set(range(40)))
