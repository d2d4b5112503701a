"""`esr upscale`: images, folders and globs through one model."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import DEFAULT_MODEL
from .options import (ArchOpt, BatchOpt, DenoiseOpt, DeviceOpt, ModelOpt, PrecisionOpt, ScaleOpt, ThreadsOpt, TileOpt,
                      ShardOpt, TileOverlapOpt, check_denoise, finite, use_threads)


def upscale(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Path = typer.Option(None, "-o", "--output", help="Output folder (default: beside each input)."),
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = None,
    scale: ScaleOpt = None,
    tile: TileOpt = "auto",
    tile_overlap: TileOverlapOpt = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 4,
    threads: ThreadsOpt = None,
    denoise: DenoiseOpt = None,
    tta: bool = typer.Option(False, "--tta", help="x8 self-ensemble (slower, slightly better)."),
    outscale: float = typer.Option(None, min=0.05, max=32, callback=finite,
                                   help="Final scale after the network (high-quality bicubic resize), 0.05 to 32."),
    fmt: str = typer.Option("same", "--format", help="same, png, jpg, webp, tiff or bmp."),
    quality: int = typer.Option(95, min=1, max=100, help="JPEG/WebP quality, 1 to 100."),
    name: str = typer.Option("{stem}_x{scale}.{ext}", help="Output name template: {stem} {scale} {ext} {model}."),
    suffix: str = typer.Option(None, help="Shortcut for --name '{stem}SUFFIX.{ext}'."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Descend into folders; mirror the tree under -o."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Keep outputs that exist (resume a batch)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist."),
    max_pixels: int = typer.Option(100_000_000, min=1,  # = images.DEFAULT_MAX_PIXELS (not imported: keeps --help fast)
                                     help="Refuse larger inputs (decompression bombs)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network (pays off on long batches)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars."),
    shard: ShardOpt = None,
) -> None:
    """Upscale images with a super-resolution network."""
    from ..errors import EsrError
    from ..models import load_model
    from ..images import writable_folder
    from ..sharding import detect, device_for
    from ..upscaling import check_template, plan, upscale_shard

    if skip_existing and overwrite:
        raise EsrError("--skip-existing and --overwrite exclude each other")
    if fmt not in ("same", "png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"):
        raise EsrError(f"--format {fmt}: choose same, png, jpg, webp, tiff or bmp")
    if output is not None:
        writable_folder(output)
    template = check_template(f"{{stem}}{suffix}.{{ext}}" if suffix is not None else name)  # before the model loads
    check_denoise(model, scale, denoise)
    use_threads(threads)
    part = detect(shard)  # --shard, else torchrun, srun or a Kubernetes indexed Job; 0/1 alone
    device = device_for(device, part)  # cuda:LOCAL_RANK when sharded on GPUs
    upscaler = load_model(model, scale=scale, arch=arch, device=device, precision=precision, tile=tile,
                          tile_overlap=tile_overlap, batch_size=batch_size, quiet=quiet, denoise=denoise)
    if compile_:
        upscaler.compile()
    jobs = plan(inputs, output, upscaler.scale, template, fmt, recursive, model=upscaler.name)
    if not jobs:
        raise EsrError("no image files found in the inputs")
    existing = "overwrite" if overwrite else "skip" if skip_existing else "error"
    summary, combined = upscale_shard(jobs, upscaler, part, tta=tta, outscale=outscale, quality=quality,
                                      existing=existing, max_pixels=max_pixels, quiet=quiet)
    who = f"{part.count} shards: " if combined else f"{part.label}: " if part.sharded else ""
    if part.main or not combined:
        typer.echo(f"{who}{upscaler.name} x{upscaler.scale} on {upscaler.model.device} ({upscaler.model.precision}): "
                   f"{summary.line()}", err=True)
    if summary.failed:
        raise typer.Exit(1)

