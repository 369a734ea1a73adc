"""DQN's overhead cuts compute exactly what the torch calls they replace compute (so a seed's
learning curve is unchanged; checked on whole runs' metrics.jsonl when they were made)."""

from __future__ import annotations

import pytest
import torch

from forgelab.agents.dqn import QNetwork, clip_grad_norm


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


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_q_network_forward_equals_its_sequential_body(activation: str) -> None:
    torch.manual_seed(1)
    net = QNetwork(4, 3, [32, 16], activation, dueling=True)
    obs = torch.randn(7, 4)
    h = net.body(obs)  # the nn.Sequential the direct calls stand in for
    q = net.head(h)
    expected = net.value(h) + q - q.mean(dim=1, keepdim=True)
    assert torch.equal(net(obs), expected)
