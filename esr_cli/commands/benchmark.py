"""`esr benchmark`: the NTIRE Efficient-SR figures (params, FLOPs, activations, #conv, memory, runtime) of models."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import ArchOpt, DeviceOpt, ScaleOpt, ThreadsOpt, use_threads


def benchmark(
    model: list[str] = typer.Option(None, "-m", "--model", help="Zoo name or weights file; repeat for several."),
    arch: ArchOpt = None,
    all_: bool = typer.Option(False, "--all", help="Every pretrained weights of the installed plugins."),
    size: int = typer.Option(256, help="Side of the square LR input (NTIRE: 256)."),
    device: DeviceOpt = "auto",
    precision: str = typer.Option("fp32", help="fp32 (as NTIRE), fp16, bf16 or auto."),
    runs: int = typer.Option(None, help="Timed runs per model (default: 50 on CUDA, elsewhere as many as fit in "
                                        "--budget)."),
    warmup: int = typer.Option(None, help="Untimed runs first; the first measures memory (default: 10 on CUDA, "
                                          "2 elsewhere)."),
    budget: float = typer.Option(None, help="Seconds of timed runs per model, spread over the whole sweep (at "
                                            "least 3 runs) (default: none on CUDA, 6 elsewhere)."),
    scale: ScaleOpt = None,
    dataset: str = typer.Option(None, help="Also measure PSNR on this dataset (folder or name under ESR_DATA)."),
    threads: ThreadsOpt = None,
    json_file: Path = typer.Option(None, "--json", help="Write every figure to this JSON file."),
    csv_file: Path = typer.Option(None, "--csv", help="Write every figure to this CSV file."),
    plot_file: Path = typer.Option(None, "--plot", help="Draw PSNR vs runtime (or FLOPs) to this PNG."),
    plot_x: str = typer.Option("runtime", help="x axis of --plot: runtime or flops."),
    ntire: bool = typer.Option(False, "--compare-ntire", help="Also print the challenges' published figures."),
) -> None:
    """Parameters, FLOPs, activations, convolutions, peak memory and runtime on one LR image, sorted by runtime."""
    from .. import benchmarking, reports
    from ..errors import EsrError

    if all_ == bool(model):
        raise EsrError("name models with --model, or pass --all (not both)")
    use_threads(threads)
    names = benchmarking.all_models() if all_ else model
    rows = benchmarking.benchmark(names, size=size, device=device, precision=precision, warmup=warmup, runs=runs,
                                  budget_s=budget, dataset=dataset, scale=scale, arch=arch,
                                  progress=lambda message: typer.echo(message, err=True))
    typer.echo(reports.table(rows))
    if ntire:
        typer.echo("\n" + reports.compare_ntire(rows))
    if json_file:
        reports.write_json(rows, json_file)
    if csv_file:
        reports.write_csv(rows, csv_file)
    if plot_file:
        reports.plot(rows, plot_file, plot_x)
        typer.echo(f"plot written to {plot_file}", err=True)
    if any(r.skipped for r in rows) if model else all(r.skipped for r in rows):
        raise typer.Exit(1)  # a model named with --model that could not be measured; --all: none could
