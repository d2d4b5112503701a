"""Options shared by several commands, declared once (typer Annotated aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOpt = Annotated[str, typer.Option("-m", "--model", help="Zoo name (see `esr models`) or a weights file.")]
ArchOpt = Annotated[str | None, typer.Option(
    "--arch", help="Architecture of a weights file whose tensors fit several (see `esr plugins`).")]
ScaleOpt = Annotated[int | None, typer.Option("-s", "--scale", help="Network scale (picks the weights; default 4).")]
TileOverlapOpt = Annotated[int | None, typer.Option(
    help="Context around each tile, blended (input pixels); default: the architecture's (24-64).")]
PrecisionOpt = Annotated[str, typer.Option(
    help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, bf16 on CPUs with it).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for the network.")]


def use_threads(threads: int | None) -> None:
    """Apply --threads (torch imported only when it is given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
