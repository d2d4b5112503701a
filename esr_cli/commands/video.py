"""`esr video`: one video through a model, keeping sound, subtitles, timing and colour tags; resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import DEFAULT_MODEL
from .options import (ArchOpt, BatchOpt, DenoiseOpt, DeviceOpt, ModelOpt, PrecisionOpt, ScaleOpt, ThreadsOpt, TileOpt,
                      ShardOpt, TileOverlapOpt, check_denoise, use_threads)


def video(
    source: Path = typer.Argument(..., help="Video file (anything the bundled ffmpeg reads)."),
    output: Path = typer.Option(None, "-o", "--output", help="Output video (default: <stem>_x<scale> beside the input)."),
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = None,
    scale: ScaleOpt = None,
    tile: TileOpt = "0",
    tile_overlap: TileOverlapOpt = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 4,
    threads: ThreadsOpt = None,
    denoise: DenoiseOpt = None,
    codec: str = typer.Option("libx264", help="Video encoder: libx264, libx265, libvpx-vp9, libsvtav1, ..."),
    crf: int = typer.Option(18, min=0, max=63, help="Constant quality (lower is better and bigger)."),
    preset: str = typer.Option(None, help="Encoder preset (x264/x265: ultrafast ... veryslow)."),
    pix_fmt: str = typer.Option("yuv420p", help="Output pixel format, e.g. yuv420p10le for 10-bit."),
    ffmpeg_arg: list[str] = typer.Option([], "--ffmpeg-arg", help="Extra encoder option (repeat: --ffmpeg-arg=-tune "
                                                                   "--ffmpeg-arg=film)."),
    start: float = typer.Option(None, help="Start of the section to process (seconds)."),
    duration: float = typer.Option(None, help="Length of the section to process (seconds)."),
    frames_dir: Path = typer.Option(None, help="Write PNG frames into this folder instead of a video."),
    segment_frames: int = typer.Option(120, min=1, help="Frames per resumable segment."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output and discard an unfinished run."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network (frames share one shape)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
    shard: ShardOpt = None,
) -> None:
    """Upscale a video; run the same command again to resume after an interruption."""
    from ..errors import EsrError
    from ..models import load_model
    from ..sharding import detect, device_for
    from ..video import Encoding, upscale_video

    if segment_frames < 1 or batch_size < 1:
        raise EsrError("--segment-frames and --batch-size must be at least 1")
    check_denoise(model, scale, denoise)
    use_threads(threads)
    part = detect(shard)  # --shard, else torchrun, srun or a Kubernetes indexed Job: a block of the segments each
    device = device_for(device, part)
    upscaler = load_model(model, scale=scale, arch=arch, device=device, precision=precision, tile=tile,
                          tile_overlap=tile_overlap, batch_size=batch_size, quiet=quiet, denoise=denoise)
    if compile_:
        upscaler.compile()
    encoding = Encoding(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, ffmpeg_args=list(ffmpeg_arg))
    summary = upscale_video(source, output, upscaler, encoding, start=start, duration=duration,
                            frames_dir=frames_dir, segment_frames=segment_frames, overwrite=overwrite, quiet=quiet, shard=part)
    who = f"{part.label}: " if part.sharded else ""
    typer.echo(f"{who}{upscaler.name} x{upscaler.scale} on {upscaler.model.device} ({upscaler.model.precision}): {summary.line()}",
               err=True)
