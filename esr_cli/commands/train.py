"""`esr train` (a TOML recipe) and `esr finetune` (pretrained weights + data + degradations)."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import ArchOpt


def train(
    config: Path = typer.Option(..., "-c", "--config", help="Recipe (TOML): model, data, loss, optim, schedule, ..."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: --set optim.lr=2e-4 (repeatable)."),
    output: Path = typer.Option(None, "-o", "--output", help="Run directory (default runs/<name>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in -o exactly where it stopped."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps (overrides train.device)."),
) -> None:
    """Train a network from a recipe; multi-GPU with `torchrun --nproc-per-node N -m esr_cli train ...`."""
    from ..recipes import load_recipe
    from ..training import run

    overrides = [*set_, *([f'train.device="{device}"'] if device else [])]
    recipe = load_recipe(config, overrides)
    weights = run(recipe, _output(output, resume, recipe["name"]), resume=resume)
    typer.echo(str(weights))


def finetune(
    model: str = typer.Option(..., "-m", "--model", help="Zoo name or weights file to start from."),
    data: list[Path] = typer.Option(..., "-d", "--data", help="HR image folder (repeatable)."),
    arch: ArchOpt = None,
    degrade: list[str] = typer.Option([], "--degrade",
                                      help="noise=SIGMA[-SIGMA] (0..1 scale), blur=K,SIGMA[-SIGMA], jpeg=Q[-Q]; "
                                           "applied in that order to the LR input (repeatable)."),
    iters: int = typer.Option(None, help="Iterations (default: the recipe's)."),
    config: Path = typer.Option(None, "-c", "--config", help="Recipe to start from (e.g. recipes/finetune_*.toml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value (repeatable)."),
    val: str = typer.Option(None, help="Validation folder or benchmark name; LR degraded the same way, fixed seed."),
    output: Path = typer.Option(None, "-o", "--output", help="Run directory (default runs/<name>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in -o exactly where it stopped."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps."),
) -> None:
    """Fine-tune pretrained weights on new data, with degradations (noise, blur, JPEG) on the LR input."""
    from ..models import locate
    from ..recipes import finetune_recipe
    from ..training import run

    overrides = list(set_)
    overrides += [f"train.iters={iters}"] if iters else []
    overrides += [f'train.device="{device}"'] if device else []
    match, _ = locate(model, arch=arch)  # read once: the recipe takes its architecture, the run its tensors
    recipe = finetune_recipe(model, [str(p) for p in data], degrade, val, config, overrides, arch=arch, match=match)
    weights = run(recipe, _output(output, resume, recipe["name"]), resume=resume, init=match)
    typer.echo(str(weights))


def _output(output: Path | None, resume: bool, name: str) -> Path | None:
    """With --resume and no -o: the newest runs/<name>-* directory."""
    if output is not None or not resume:
        return output
    from ..errors import EsrError

    runs = sorted(Path("runs").glob(f"{name}-*"))
    if not runs:
        raise EsrError(f"--resume: no runs/{name}-* directory; give the run directory with -o")
    return runs[-1]
