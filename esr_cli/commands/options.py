"""Options shared by several commands, declared once (typer Annotated aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOpt = Annotated[str, typer.Option("-m", "--model", help="Zoo name (see `esr models`) or a weights file.")]
ArchOpt = Annotated[str | None, typer.Option(
    "--arch", help="Architecture of a weights file whose tensors fit several (see `esr plugins`).")]
ScaleOpt = Annotated[int | None, typer.Option("-s", "--scale", help="Network scale (picks the weights; default 4).")]
TileOverlapOpt = Annotated[int | None, typer.Option(
    min=0, max=512, help="Context around each tile, blended (input pixels); default: the architecture's (24-64).")]
PrecisionOpt = Annotated[str, typer.Option(
    help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, bf16 on CPUs with it).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads for the network.")]
BatchOpt = Annotated[int, typer.Option(min=1, max=1024, help="Tiles (or frames) per forward pass.")]


def tile_size(value: str) -> int | str:
    """--tile as the engine takes it: "auto", 0 (whole image) or a size of at least 16 pixels."""
    if value == "auto":
        return "auto"
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile != 0 and not 16 <= tile <= 65536:
        raise typer.BadParameter(f"{value!r}: give auto, 0 (whole image) or a size from 16 to 65536 pixels",
                                 param_hint="'--tile'")
    return tile


TileOpt = Annotated[str, typer.Option(callback=tile_size, help=(
    "Tile size in input pixels (16 or more), `auto` (fits free memory) or 0 (whole image)."))]


def finite(value: float | None) -> float | None:
    """Refuse nan and infinities (click's ranges let nan through)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


DenoiseOpt = Annotated[float | None, typer.Option(min=0, max=1, callback=finite, help=(
    "Denoise strength 0 to 1, for models with a denoise partner (realesr-general-v3-x4): 1 the model itself, "
    "0 its partner (noise kept), between them the blend of their weights."))]


def check_denoise(model: str, scale: int | None, denoise: float | None) -> None:
    """--denoise with a model that has no denoise partner is a usage error naming the models that have one."""
    if denoise is None:
        return
    from ..models import denoise_models, denoise_partner

    if denoise_partner(model, scale) is None:
        raise typer.BadParameter(f"{model} has no denoise partner; models that support it: "
                                 f"{', '.join(denoise_models()) or 'none installed'}", param_hint="'--denoise'")


def use_threads(threads: int | None) -> None:
    """Apply --threads (torch imported only when it is given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def shard_spec(value: str | None) -> str | None:
    """--shard I/N checked before anything loads (esr_cli.sharding imports no torch)."""
    from ..sharding import parse

    if value is not None:
        try:
            parse(value)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--shard'") from None
    return value


ShardOpt = Annotated[str | None, typer.Option(
    "--shard", callback=shard_spec, metavar="I/N",
    help="Do share I (0 to N-1) of N. Default: from torchrun, srun (SLURM) or a Kubernetes indexed Job "
         "(JOB_COMPLETION_INDEX with ESR_SHARDS=N).")]
