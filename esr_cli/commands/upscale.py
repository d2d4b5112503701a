"""`esr upscale`: images, folders and globs through one model."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import DEFAULT_MODEL
from .options import ArchOpt, DeviceOpt, ModelOpt, PrecisionOpt, ScaleOpt, ThreadsOpt, TileOverlapOpt, use_threads


def upscale(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Path = typer.Option(None, "-o", "--output", help="Output folder (default: beside each input)."),
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = None,
    scale: ScaleOpt = None,
    tile: str = typer.Option("auto", help="Tile size in input pixels, `auto` (fits free memory) or 0 (whole image)."),
    tile_overlap: TileOverlapOpt = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: int = typer.Option(4, help="Tiles per forward pass."),
    threads: ThreadsOpt = None,
    tta: bool = typer.Option(False, "--tta", help="x8 self-ensemble (slower, slightly better)."),
    outscale: float = typer.Option(None, help="Final scale after the network (high-quality bicubic resize)."),
    fmt: str = typer.Option("same", "--format", help="same, png, jpg, webp, tiff or bmp."),
    quality: int = typer.Option(95, help="JPEG/WebP quality."),
    name: str = typer.Option("{stem}_x{scale}.{ext}", help="Output name template: {stem} {scale} {ext} {model}."),
    suffix: str = typer.Option(None, help="Shortcut for --name '{stem}SUFFIX.{ext}'."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Descend into folders; mirror the tree under -o."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Keep outputs that exist (resume a batch)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist."),
    max_pixels: int = typer.Option(100_000_000,  # = images.DEFAULT_MAX_PIXELS (not imported: keeps --help fast)
                                     help="Refuse larger inputs (decompression bombs)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network (pays off on long batches)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars."),
) -> None:
    """Upscale images with a super-resolution network."""
    from ..errors import EsrError
    from ..models import load_model
    from ..upscaling import plan, upscale_files

    if skip_existing and overwrite:
        raise EsrError("--skip-existing and --overwrite exclude each other")
    if fmt not in ("same", "png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"):
        raise EsrError(f"--format {fmt}: choose same, png, jpg, webp, tiff or bmp")
    use_threads(threads)
    upscaler = load_model(model, scale=scale, arch=arch, device=device, precision=precision, tile=_tile(tile),
                          tile_overlap=tile_overlap, batch_size=batch_size, quiet=quiet)
    if compile_:
        upscaler.compile()
    template = f"{{stem}}{suffix}.{{ext}}" if suffix else name
    jobs = plan(inputs, output, upscaler.scale, template, fmt, recursive, model=upscaler.name)
    if not jobs:
        raise EsrError("no image files found in the inputs")
    existing = "overwrite" if overwrite else "skip" if skip_existing else "error"
    summary = upscale_files(jobs, upscaler, tta=tta, outscale=outscale, quality=quality, existing=existing,
                            max_pixels=max_pixels, quiet=quiet)
    typer.echo(f"{upscaler.name} x{upscaler.scale} on {upscaler.model.device} ({upscaler.model.precision}): {summary.line()}",
               err=True)
    if summary.failed:
        raise typer.Exit(1)


def _tile(value: str) -> int | str:
    from ..errors import EsrError

    if value == "auto":
        return "auto"
    try:
        return max(0, int(value))
    except ValueError:
        raise EsrError(f"--tile {value}: give a number of pixels, auto or 0") from None
