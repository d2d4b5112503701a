"""`esr export`: a model to ONNX, ncnn, safetensors or a plain .pth, checked before it is written."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .options import ArchOpt, ScaleOpt


class Format(str, Enum):
    onnx = "onnx"
    ncnn = "ncnn"
    safetensors = "safetensors"
    pth = "pth"


def export(
    model: Annotated[str, typer.Argument(help="Zoo name (see `esr models`) or a weights file.", show_default=False)],
    output: Annotated[Path, typer.Option(
        "-o", "--output", show_default=False,
        help="File to write: .onnx, .param (ncnn; the .bin is written beside it), .safetensors or .pth.")],
    format: Annotated[Format | None, typer.Option(
        "--format", case_sensitive=False, help="Format, when the suffix does not say it.")] = None,
    fp16: Annotated[bool, typer.Option(
        "--fp16", help="Half-precision weights (ONNX: fp16 inside the graph, float32 in and out).")] = False,
    arch: ArchOpt = None,
    scale: ScaleOpt = None,
    fuse: Annotated[bool, typer.Option(
        "--fuse", help="The file holds a training-time layout (re-parameterisable Conv3XC / ECB blocks): fuse "
                       "each block into its plain conv, the deploy layout the authors ship.")] = False,
    check_image: Annotated[Path | None, typer.Option(
        "--check-image", help="Also compare the runtime with PyTorch on this image (ONNX, ncnn).")] = None,
) -> None:
    """Write a model for other runtimes, after checking that the runtime agrees with PyTorch.

    ONNX: any batch, height and width, RGB in [0, 1] in and out, padding built in. ncnn: for Real-ESRGAN-ncnn-vulkan
    and upscayl (blobs data / output). safetensors / pth: weights only, for `--model`."""
    from ..export import export_model

    done = export_model(model, output, format=format.value if format else None, fp16=fp16, arch=arch, scale=scale,
                        fuse=fuse, check_image=check_image)
    checked = ""
    if agreed := done.agreement:
        rounding = (f", float32 rounding: esr's own fp32 is {agreed.rounding:.2g} from float64"
                    if agreed.rounding is not None else "")
        checked = (f"; {'onnxruntime' if done.format == 'onnx' else 'ncnn'} vs PyTorch: max |diff| "
                   f"{agreed.max_error:.2g}{rounding}")
    fused = f"; {done.fused} re-parameterisable blocks fused" if done.fused else ""
    typer.echo(f"{done.name} (x{done.scale}) -> {', '.join(map(str, done.paths))} ({done.format}{checked}{fused})")
    if done.note:
        typer.echo(f"note: {done.note}", err=True)
