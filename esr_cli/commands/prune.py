"""`esr prune`: a smaller network of the same architecture, channels kept by L1 norm (esr_cli.pruning)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import ArchOpt, ScaleOpt


def prune(
        model: Annotated[str, typer.Argument(help="Zoo name or weights file to prune.")],
        channels: Annotated[int, typer.Option("--channels", "-n",
                                              help="Feature channels to keep (below the network's width).")] = ...,
        output: Annotated[Path, typer.Option("-o", "--output", help="Output file (.pth or .safetensors).")] = ...,
        arch: ArchOpt = None,
        scale: ScaleOpt = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False) -> None:
    """Prune a network to N feature channels (L1 norm, consistent across residual paths); `esr finetune -m OUT`
    then recovers its quality. For architectures whose plugin declares pruning (`esr plugins`)."""
    from ..pruning import prune_model

    done = prune_model(model, channels, output, arch=arch, scale=scale, quiet=quiet)
    before, after = done.params
    typer.echo(f"{output}: {done.after.architecture.name} {done.after.config} from {model} "
               f"({done.before.config}); params {before:,} -> {after:,}")
