"""A tiny, purely local architecture used as a test double (receptive field: 2 pixels each side)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esr_cli import Architecture, count_blocks, shuffle_scale


@dataclass
class TinyConfig:
    channels: int = 8
    blocks: int = 1
    scale: int = 2


class TinyNet(nn.Module):
    def __init__(self, channels: int = 8, blocks: int = 1, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[nn.Conv2d(channels, channels, 1) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.tail(torch.relu(self.body(self.head(x)))))


def read_config(sd, scale=None) -> TinyConfig:
    return TinyConfig(sd["head.weight"].shape[0], count_blocks(sd, "body"), shuffle_scale(sd["tail.weight"].shape[0]))


tiny = Architecture(name="tiny", model=TinyNet, config=TinyConfig, detect=("head.weight", "tail.weight"),
                    read_config=read_config, scales=(2, 3, 4))


def tiny_weights(path, scale: int = 2, seed: int = 0):
    """Save a random TinyNet state dict to `path` and return the module."""
    torch.manual_seed(seed)
    net = TinyNet(scale=scale)
    torch.save(net.state_dict(), path)
    return net
