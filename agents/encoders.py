"""Convolutional encoders for image observations, chosen from the observation space.

* :class:`NatureCNN` -- Mnih et al. 2015 (Nature 518), the DQN network for 84x84 Atari frames:
  conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, each followed by ReLU (3136 features at 84x84).
* :class:`MinAtarCNN` -- Young & Tian 2019 (https://arxiv.org/abs/1903.03176), the network of the
  MinAtar baselines for 10x10xC grids: one conv 16 3x3/1 with ReLU (16x8x8 = 1024 features).

Both end in a flattened feature vector; the agents' ordinary hidden layers (``net_arch`` /
``hidden_sizes``: [512] for Nature DQN, [128] for MinAtar) and heads go on top of it.

Images stay in the env's dtype (uint8 or bool) in the replay and rollout buffers and are moved
to the device as they are; :class:`ImageEncoder` scales them to [0, 1] floats there (uint8 /
255), and puts channels first when the env gives them last (MinAtar's HxWxC).
"""

from __future__ import annotations

from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

EncoderName = Literal["auto", "mlp", "nature", "minatar"]


def is_image_space(space: gym.Space) -> bool:
    """A Box of uint8 or bool with 2 (HxW) or 3 (CxHxW or HxWxC) dimensions."""
    return (isinstance(space, gym.spaces.Box) and space.dtype in (np.uint8, np.bool_)
            and len(space.shape) in (2, 3))


def choose_encoder(space: gym.Space, name: EncoderName) -> EncoderName:
    """``auto`` -> ``nature`` for images at least 36 pixels high and wide, ``minatar`` for
    smaller images, ``mlp`` (flattened observations) for everything else."""
    if name != "auto":
        return name
    if not is_image_space(space):
        return "mlp"
    height, width = _chw(space.shape)[1:]
    return "nature" if min(height, width) >= min_image_size(NATURE_LAYERS) else "minatar"


# (out_channels, kernel, stride) of each convolution; each one is followed by a ReLU.
NATURE_LAYERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
MINATAR_LAYERS = ((16, 3, 1),)


def min_image_size(layers: tuple[tuple[int, int, int], ...]) -> int:
    """The smallest height/width the convolutions ``layers`` leave at least one pixel of (36 for
    the Nature CNN, 3 for MinAtar's): walk back from a 1-pixel output."""
    size = 1
    for _, kernel, stride in reversed(layers):
        size = (size - 1) * stride + kernel
    return size


def _channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a 3-d image shape is HxWxC: a last axis of at most 16 with a larger first one
    (MinAtar's 10x10xC, RGB frames), or a cube, as MinAtar Seaquest's 10x10x10 (gymnasium's
    image envs and MinAtar give channels last; channels-first 4x84x84 stacks are not cubes)."""
    return shape[-1] <= 16 and (shape[0] > shape[-1] or shape[0] == shape[1] == shape[2])


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an image shape: HxW has one channel; see :func:`_channels_last`; otherwise
    channels-first (stacked frames, 4x84x84)."""
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) != 3:
        raise ValueError(f"an image observation needs 2 or 3 dimensions, not shape {shape}")
    if _channels_last(shape):
        return shape[2], shape[0], shape[1]
    return shape


class EncoderError(ValueError):
    """An encoder that does not fit the observations; ``hint`` says what to use instead."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class ImageEncoder(nn.Module):
    """Raw image batch (B, *obs_shape) in the env's dtype -> features (B, out_features).

    :param obs_shape: the observation space's shape.
    :param name: ``nature`` or ``minatar``.
    :param scale: divisor that maps raw values to [0, 1] (255 for uint8, 1 for bool).
    """

    def __init__(self, obs_shape: tuple[int, ...], name: str, scale: float) -> None:
        super().__init__()
        obs_shape = tuple(obs_shape)
        channels, height, width = _chw(obs_shape)
        self.channels_last = len(obs_shape) == 3 and _channels_last(obs_shape)
        self.add_channel = len(obs_shape) == 2
        self.scale = float(scale)
        if name not in ("nature", "minatar"):
            raise ValueError(f"unknown image encoder {name!r}; choose nature or minatar")
        layers = NATURE_LAYERS if name == "nature" else MINATAR_LAYERS
        # Checked here: torch's own error for a too-small image comes as a RuntimeError from
        # the forward pass below, naming neither the encoder nor the observation.
        least = min_image_size(layers)
        if min(height, width) < least:
            cnn = "the Nature CNN" if name == "nature" else "the MinAtar CNN"
            raise EncoderError(
                f"{cnn} needs images of at least {least}x{least}, not {height}x{width} "
                f"(observation shape {obs_shape})",
                hint="use encoder: minatar (the CNN for small images) or auto"
                if name == "nature" else "use encoder: mlp")
        modules: list[nn.Module] = []
        in_channels = channels
        for out_channels, kernel, stride in layers:
            modules += [nn.Conv2d(in_channels, out_channels, kernel, stride=stride), nn.ReLU()]
            in_channels = out_channels
        self.net = nn.Sequential(*modules, nn.Flatten())
        # Initialised after all are built, so the random draws (and seeded runs) stay as they were.
        for module in self.net:
            if isinstance(module, nn.Conv2d):  # orthogonal, gain √2, as the MLPs here
                nn.init.orthogonal_(module.weight, np.sqrt(2))
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.out_features = int(self.net(torch.zeros(1, channels, height, width)).shape[1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.scale != 1.0:
            x = x / self.scale
        if self.add_channel:
            x = x.unsqueeze(1)
        elif self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.net(x)


def make_encoder(space: gym.Space, name: EncoderName) -> ImageEncoder | None:
    """The encoder for ``space`` (None: flatten the observations into an MLP).

    :raises ValueError: for a convolutional encoder on a space that is not an image;
        :class:`EncoderError` (a ValueError) for images too small for it.
    """
    chosen = choose_encoder(space, name)
    if chosen == "mlp":
        return None
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (2, 3):
        raise ValueError(f"encoder {chosen!r} needs image observations (a Box of HxW, CxHxW "
                         f"or HxWxC), not {space}")
    scale = 255.0 if space.dtype == np.uint8 else 1.0
    return ImageEncoder(space.shape, chosen, scale)
