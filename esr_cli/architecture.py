"""The plugin contract: what an architecture plugin declares, as typed data."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

StateDict = Mapping[str, "torch.Tensor"]
"""A checkpoint's tensors by key, already unwrapped (no `params_ema`, no `module.` prefix)."""

PRECISIONS = ("fp16", "bf16")


@dataclass(frozen=True)
class Challenge:
    """A weights file's row in a challenge's results table, as published. Runtime and memory were measured on
    that table's GPU; FLOPs are multiply-accumulates for a 256x256 LR input, as the NTIRE counter reports them."""

    event: str
    """e.g. `NTIRE 2022 ESR`."""
    year: int
    ranks: Mapping[str, int] = field(default_factory=dict)
    """Rank by track, the headline track first, e.g. {"runtime": 2, "complexity": 18, "overall": 6}."""
    team: str = ""
    params_m: float | None = None
    flops_g: float | None = None
    activations_m: float | None = None
    convs: int | None = None
    runtime_ms: float | None = None
    memory_mb: float | None = None
    gpu: str = ""
    """The GPU of the published runtime and memory."""
    val_psnr: float | None = None
    """RGB PSNR (dB) on the challenge's validation set."""
    test_psnr: float | None = None
    source: str = ""
    """Where the figures were published."""
    note: str = ""
    """Why a published figure cannot be compared as it stands, when it cannot."""

    @property
    def track(self) -> str:
        return next(iter(self.ranks), "")

    @property
    def rank(self) -> int | None:
        return next(iter(self.ranks.values()), None)


@dataclass(frozen=True)
class Weights:
    """One pretrained checkpoint published by an architecture's authors."""

    name: str
    """`<arch>[-<variant>]-x<scale>`, e.g. `rlfn-s-x2`."""
    scale: int
    url: str
    """https URL of the authors' file, pinned to a commit where the host allows it."""
    sha256: str
    license: str
    """SPDX id of the repository's licence, or `none` when the repository has none."""
    source: str
    """The repository or page the file comes from."""
    params: int
    """Number of parameters (elements of every tensor in the checkpoint)."""
    variant: str = ""
    """A few words on which model of the paper or challenge this is."""
    published: Mapping[str, tuple[float, float | None]] = field(default_factory=dict)
    """Published Y-channel (PSNR dB, SSIM) by benchmark name, e.g. {"Set5": (32.24, 0.8952)}."""
    reference_psnr: float | None = None
    """Set5 Y-PSNR (dB) that the authors' own code gives with this file on the official LR images."""
    challenge: Challenge | None = None
    """The file's entry in a challenge's results table, for files submitted to one."""
    denoise_partner: str | None = None
    """Zoo name of the same network trained to keep noise, for `--denoise S`: S = 1 these weights, S = 0 the
    partner's, between them network interpolation of the two (as Real-ESRGAN's `-dn`)."""


@dataclass(frozen=True)
class Architecture:
    """A network family: how to build it, recognise its checkpoints and feed it."""

    name: str
    """Lower-case name; equal to the entry point's name in the `esr.architectures` group."""
    model: Callable[..., nn.Module]
    """Builds the network: `model(**dataclasses.asdict(config))`."""
    config: type
    """A dataclass of the constructor's hyper-parameters, with a `scale` field."""
    detect: tuple[str, ...]
    """State-dict keys that are all present in this architecture's checkpoints."""
    read_config: Callable[[StateDict, int | None], Any]
    """Reads the config back from tensor shapes; the int is a scale hint for multi-scale files."""
    paper: str = ""
    scales: tuple[int, ...] = (2, 3, 4)
    """The scales the network can be built for."""
    input_range: float = 1.0
    """The network expects RGB in [0, input_range] (1 or 255); mean shifts live inside the module."""
    precisions: tuple[str, ...] = PRECISIONS
    """Low precisions whose Set5 PSNR cost is at most 0.05 dB (measured), of `fp16`, `bf16`."""
    size_multiple: int = 1
    """Input height and width must be multiples of this; the engine pads."""
    min_size: int = 1
    """Smallest input height and width the network runs on (strided pooling); the engine pads up to it."""
    tile_grid: int = 1
    """Tiled runs start every window on a multiple of this: the total stride of a pooled map that the network
    resizes back to the input size (`esr_cli.tiling.upsample`), so that each window pools on the image's grid."""
    tile_overlap: int = 24
    """Default context (input pixels) around each tile: enough for tiled outputs to match the whole image's to
    1 level (8-bit) on Set14 at tiles of 64, measured."""
    weights: tuple[Weights, ...] = ()
    convert: Callable[[StateDict], StateDict] | None = None
    """Maps another published key layout of the same tensors onto this one (or returns it unchanged)."""
    train_build: Callable[[Any], nn.Module] | None = None
    """Builds the training-time variant of `config`'s network, with re-parameterisable blocks (`esr_cli.reparam`)
    where the authors trained them; `reparam.fuse_modules` of it has exactly `build(config)`'s state-dict layout.
    `esr train` uses it when the recipe sets `model.reparam = true`."""
    prune: Callable[[nn.Module, Any, int], tuple[nn.Module, Any]] | None = None
    """`prune(module, config, channels) -> (smaller module, its config)`: the same architecture with `channels`
    feature channels, kept by L1 norm consistently across residual paths (`esr_cli.pruning` has the helpers; the
    plugin declares which convs share channels). Raises EsrError when `channels` is not below the current width.
    `esr prune` and the `prune` stages of recipes use it; the result is read back by `read_config`."""

    def build(self, config: Any) -> nn.Module:
        return self.model(**dataclasses.asdict(config))

    def __str__(self) -> str:
        return self.name  # messages and test ids: the whole dataclass would print its functions' addresses


def count_blocks(state_dict: StateDict, prefix: str) -> int:
    """Number of distinct numbered children under `prefix`: `body.0.*` .. `body.7.*`, `B1.*` .. `B4.*` or
    `block_1.*` .. `block_6.*` (prefix `body`, `B`, `block_`) give 8, 4 and 6."""
    pattern = re.compile(re.escape(prefix) + r"\.?(\d+)\.")
    return len({m.group(1) for key in state_dict if (m := pattern.match(key))})


def shuffle_scale(out_channels: int, channels: int = 3) -> int:
    """The pixel-shuffle factor r of a conv producing `channels * r**2` outputs."""
    r = math.isqrt(out_channels // channels)
    if r * r * channels != out_channels:
        raise ValueError(f"{out_channels} output channels is not {channels} x r^2")
    return r
