"""Channel pruning by L1 norm (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017), consistent across
residual paths: `esr prune MODEL --channels N -o OUT.pth`, and the `prune` stages of recipes.

A network's feature channels fall into groups, one per feature space that several convs share:
- writers: convs whose outputs are summed into the space (a residual addition makes several of them);
- gates: convs whose outputs multiply it channel by channel (an attention mask, e.g. ESA's conv4);
- readers: convs that take it as input.
A channel is removed from a whole group at once (the writers' and gates' output rows, the readers' input columns),
so every residual sum and every mask stays aligned and the smaller network is the same architecture with a smaller
config. A channel's importance is the L1 norm of every weight removed with it (its filters in the writers and gates,
its input columns in the readers), each conv's norms divided by their mean so that no layer outweighs the others by
its scale alone; the N most important channels are kept, in order. (The writers' filters alone, Li et al.'s
criterion, miss what the readers make of a channel: on rlfn-x4, cutting RLFN's shallow space alone from 52 to 46
channels by them leaves 8.4 dB on Set5, by all the weights 32.04 dB, of 32.24.)

An architecture opts in with `Architecture.prune(module, config, channels) -> (module, config)`: its plugin lists
its groups and calls `prune_state_dict`. Nothing here knows an architecture by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EsrError, shown

if TYPE_CHECKING:
    import torch

    from .registry import Match, Registry

SUFFIXES = (".pth", ".pt", ".safetensors")


@dataclass(frozen=True)
class ChannelGroup:
    """The convs (by module name, e.g. `block_1.c5`) that share one feature space's channels."""

    name: str
    writers: tuple[str, ...]
    """Convs whose outputs are summed into the space: output rows (weight, bias) pruned."""
    readers: tuple[str, ...]
    """Convs that read the space: input columns of the weight pruned (the bias stays)."""
    gates: tuple[str, ...] = ()
    """Convs whose outputs multiply the space channel by channel: output rows (weight, bias) pruned."""


def group_width(state_dict: Mapping[str, torch.Tensor], group: ChannelGroup) -> int:
    """The number of channels of `group` (its first writer's output channels)."""
    if not group.writers:
        raise ValueError(f"pruning group {group.name!r} has no writer")
    return int(_get(state_dict, f"{group.writers[0]}.weight", group).shape[0])


def l1_scores(state_dict: Mapping[str, torch.Tensor], group: ChannelGroup) -> torch.Tensor:
    """Importance of each channel of `group`: the L1 norm of every weight that goes with it (its filter in each
    writer and gate, its input column in each reader), summed over those convs after dividing each conv's norms by
    their mean (a conv whose weights are all zero adds nothing)."""
    total = None
    for conv, dim in [*((w, 0) for w in (*group.writers, *group.gates)), *((r, 1) for r in group.readers)]:
        weight = _get(state_dict, f"{conv}.weight", group).detach().double().abs()
        norms = weight.transpose(0, dim).flatten(1).sum(1)
        mean = float(norms.mean())
        norms = norms / mean if mean > 0 else norms
        if total is not None and norms.shape != total.shape:
            raise ValueError(f"pruning group {group.name!r}: {conv} has {norms.shape[0]} channels on dimension "
                             f"{dim}, {group.writers[0]} {total.shape[0]} outputs")
        total = norms if total is None else total + norms
    return total


def keep_indices(scores: torch.Tensor, channels: int) -> torch.Tensor:
    """The indices of the `channels` highest scores, in ascending order (ties: the lower index is kept)."""
    import torch

    order = torch.sort(scores, descending=True, stable=True).indices[:channels]
    return order.sort().values


def check_channels(channels: int, width: int) -> None:
    """EsrError unless 1 <= channels < width."""
    if not 1 <= channels < width:
        raise EsrError(f"cannot prune to {channels} channels: the network has {width}; give 1 to {width - 1}"
                       if width > 1 else f"cannot prune: the network has {width} channel")


def prune_state_dict(state_dict: Mapping[str, torch.Tensor], groups: Sequence[ChannelGroup],
                     channels: int | Mapping[str, int]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The state dict with each group cut to `channels` (one number for all, or by group name), and the kept
    indices by group. Every group is scored on the unpruned tensors; tensors of no group are copied as they are.
    EsrError when a group has no more than `channels` channels; ValueError when the groups do not fit the tensors
    (a plugin's mistake: a conv listed twice for one dimension, widths that differ within a group)."""
    kept = {}
    for group in groups:
        n = channels if isinstance(channels, int) else channels[group.name]
        check_channels(n, group_width(state_dict, group))
        kept[group.name] = keep_indices(l1_scores(state_dict, group), n)
    out = dict(state_dict)
    for group in groups:
        width, index = group_width(state_dict, group), kept[group.name]
        for conv in (*group.writers, *group.gates):
            for key in (f"{conv}.weight", f"{conv}.bias"):
                if key in out or key.endswith(".weight"):
                    out[key] = _select(out, key, 0, index, width, group)
        for conv in group.readers:
            out[f"{conv}.weight"] = _select(out, f"{conv}.weight", 1, index, width, group)
    return {k: v.detach().clone().contiguous() for k, v in out.items()}, kept


def _get(state_dict: Mapping[str, torch.Tensor], key: str, group: ChannelGroup) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"pruning group {group.name!r}: the network has no tensor {key}")
    return state_dict[key]


def _select(state_dict: Mapping[str, torch.Tensor], key: str, dim: int, index: torch.Tensor, width: int,
            group: ChannelGroup) -> torch.Tensor:
    tensor = _get(state_dict, key, group)
    if tensor.dim() <= dim or tensor.shape[dim] != width:
        raise ValueError(f"pruning group {group.name!r}: {key} has shape {tuple(tensor.shape)}, not {width} "
                         f"channels on dimension {dim} (listed twice, or in the wrong group?)")
    return tensor.index_select(dim, index.to(tensor.device))


# ---- whole models -------------------------------------------------------------------------------

def prunable(registry: Registry | None = None) -> list[str]:
    """Names of the installed architectures that declare a prune hook."""
    from .registry import default_registry

    return [a.name for a in (registry or default_registry()).architectures.values() if a.prune is not None]


def prune(match: Match, channels: int, registry: Registry | None = None) -> Match:
    """`match`'s network cut to `channels` feature channels by its architecture's prune hook: a Match of the same
    architecture, its config read back from the pruned tensors (so that detection finds it as it is)."""
    from .errors import first_line
    from .registry import Match, try_architecture

    arch = match.architecture
    if arch.prune is None:
        able = ", ".join(prunable(registry)) or "none installed"
        raise EsrError(f"{arch.name} cannot be pruned: its plugin declares no prune hook (architectures that can: "
                       f"{able})")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise EsrError(f"cannot prune to {channels!r} channels: give a whole number of at least 1")
    module = arch.build(match.config)
    try:
        module.load_state_dict(dict(match.state_dict), strict=True)
    except RuntimeError as e:
        raise EsrError(f"the weights do not fit {arch.name} {match.config}: {first_line(e)}") from None
    smaller, config = arch.prune(module.eval(), match.config, channels)
    state = {k: v.detach().cpu().contiguous() for k, v in smaller.state_dict().items()}
    found = try_architecture(arch, state, config.scale)
    if not isinstance(found, Match) or found.config != config:
        why = found[2] if not isinstance(found, Match) else f"read back as {found.config}"
        raise RuntimeError(f"{arch.name}'s prune hook returned a network that is not {config}: {why}")
    return found


@dataclass(frozen=True)
class Pruned:
    """What `prune_model` did: the network before and after, and where it went."""

    before: Match
    after: Match
    path: Path

    @property
    def params(self) -> tuple[int, int]:
        from .checkpoint import count_params

        return count_params(self.before.state_dict), count_params(self.after.state_dict)


def prune_model(ref: str | Path, channels: int, output: str | Path, arch: str | None = None,
                scale: int | None = None, registry: Registry | None = None, quiet: bool = False) -> Pruned:
    """Prune a zoo name or weights file (located as `--model` does) to `channels` feature channels and write the
    smaller network's state dict to `output` (.pth/.pt or .safetensors, atomically): a file that `--model` loads
    by detection and `esr finetune -m` continues."""
    from .images import writable_folder
    from .interpolation import save_state_dict
    from .models import locate

    output = Path(output)
    if output.suffix.lower() not in SUFFIXES:
        raise EsrError(f"-o {shown(output)}: name a .pth or .safetensors file")
    if output.is_dir():
        raise EsrError(f"-o {shown(output)}: is a folder; name a .pth or .safetensors file")
    writable_folder(output.parent, option="-o")  # before anything is downloaded or computed
    before, _ = locate(ref, scale=scale, arch=arch, registry=registry, quiet=quiet)
    after = prune(before, channels, registry)
    save_state_dict(after.state_dict, output)
    return Pruned(before, after, output)
