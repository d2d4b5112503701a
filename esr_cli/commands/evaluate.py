"""`esr evaluate`: PSNR/SSIM on benchmark sets, as the SR tables compute them, beside the published figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import typer

from .options import ArchOpt, DeviceOpt, ShardOpt, TileOpt


def evaluate(
    models: list[str] = typer.Option(..., "-m", "--model", help="Zoo name or weights file (repeat for several)."),
    datasets: list[str] = typer.Option(..., "-d", "--dataset",
                                       help="Folder (EDSR HR/ + LR_bicubic/, HR/ + LR/, or HR images alone: LR made "
                                            "by MATLAB bicubic) or a benchmark name under ESR_DATA (Set5, Set14, "
                                            "B100, Urban100, Manga109, DIV2K-val). Repeat for several."),
    arch: ArchOpt = None,
    scale: int = typer.Option(None, "-s", "--scale", help="Scale (picks the zoo weights; default: each model's)."),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="x8 geometric self-ensemble (the '+' models)."),
    metric_space: str = typer.Option("y", help="y (BT.601 luma, the tables) or rgb (the NTIRE challenges)."),
    border: int = typer.Option(None, min=0, help="Pixels shaved from each border (default: the scale; NTIRE uses 4)."),
    per_image: bool = typer.Option(False, "--per-image", help="Print (and write to --csv) every image's figures."),
    save_images: Path = typer.Option(None, help="Write the SR images to DIR/<model>/<dataset>/<name>.png."),
    json_path: Path = typer.Option(None, "--json", help="Write the results as JSON."),
    csv_path: Path = typer.Option(None, "--csv", help="Write the results as CSV."),
    compare: Path = typer.Option(None, help="Write a PNG of crops (HR | bicubic | each model) where they differ most."),
    precision: str = typer.Option("fp32", help="fp32 (the tables), auto, fp16 or bf16."),
    device: DeviceOpt = "auto",
    tile: TileOpt = "0",
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
    shard: ShardOpt = None,
) -> None:
    """Evaluate models on benchmark datasets (mean PSNR/SSIM, published figure and difference)."""
    from ..evaluation import evaluate as run
    from ..images import atomic_write, writable_file, writable_folder
    from ..sharding import detect, device_for

    for path, option in ((json_path, "--json"), (csv_path, "--csv"), (compare, "--compare")):
        if path is not None:  # before hours of evaluation, not after
            writable_file(path, option)
    if save_images is not None:
        writable_folder(save_images, "--save-images")
    part = detect(shard)  # --shard, else torchrun, srun or a Kubernetes indexed Job: a share of the images each
    results = run(models, datasets, scale=scale, arch=arch, self_ensemble=self_ensemble, precision=precision,
                  device=device_for(device, part), tile=tile, metric_space=metric_space, border=border,
                  save_images=save_images, compare=compare, progress=not quiet, shard=part, combine=json_path)
    if results is None:
        typer.echo(f"{part.label}: done; the last shard to finish writes the results to {json_path}", err=True)
        return
    if part.launcher == "torchrun" and not part.main:
        return  # rank 0 reports for all
    typer.echo(format_table(results, per_image))
    if json_path:
        atomic_write(json_path, (json.dumps({"results": [r.to_dict() for r in results]}, indent=1) + "\n").encode())
    if csv_path:
        write_csv(csv_path, results, per_image)
    if compare:
        typer.echo(f"comparison written to {compare}", err=True)


def format_table(results, per_image: bool = False) -> str:
    """One block per dataset and scale: a row per model, the published figure and our difference beside it."""
    lines = []
    for key in dict.fromkeys((r.dataset, r.scale) for r in results):
        rows = [r for r in results if (r.dataset, r.scale) == key]
        width = max(len("model"), *(len(r.model) for r in rows))
        header = f"{'model':<{width}}  {'PSNR':>8}  {'SSIM':>7}  {'published':>16}  {'diff':>7}"
        lines += ["", f"{key[0]} x{key[1]}", header]
        for r in rows:
            lines.append(f"{r.model:<{width}}  {r.psnr:8.4f}  {r.ssim:7.4f}  {_published(r):>16}  {_diff(r):>7}")
            lines += [f"  {i.name:<{width - 2}}  {i.psnr:8.4f}  {i.ssim:7.4f}" for i in r.images] if per_image else []
    return "\n".join(lines[1:])


def _published(r) -> str:
    if r.published is None:
        return "-"
    psnr, ssim = r.published
    return f"{psnr:.4f}/{ssim:.4f}" if ssim is not None else f"{psnr:.4f}"


def _diff(r) -> str:
    return "-" if r.difference is None or math.isinf(r.difference) else f"{r.difference:+.4f}"


def write_csv(path: Path, results, per_image: bool = False) -> None:
    """A row per (model, dataset) mean (image `mean`), and per image with `per_image` (written atomically)."""
    import io

    from ..images import atomic_write

    with io.StringIO(newline="") as f:
        out = csv.writer(f)
        out.writerow(["model", "dataset", "scale", "image", "psnr", "ssim", "published_psnr", "published_ssim"])
        for r in results:
            pub = r.published or (None, None)
            out.writerow([r.model, r.dataset, r.scale, "mean", f"{r.psnr:.6f}", f"{r.ssim:.6f}", *pub])
            for i in r.images if per_image else []:
                out.writerow([r.model, r.dataset, r.scale, i.name, f"{i.psnr:.6f}", f"{i.ssim:.6f}", "", ""])
        atomic_write(path, f.getvalue().encode())
