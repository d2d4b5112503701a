"""`esr models`: list, describe, download, remove and verify the pretrained weights of the installed plugins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from .options import ArchOpt, ScaleOpt, finite


app = typer.Typer(help="List, describe, download, remove and verify pretrained weights.", rich_markup_mode=None)

NameArg = Annotated[str, typer.Argument(help="A weights name (rlfn-s-x2) or an architecture name (rlfn).")]


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context,
           as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False) -> None:
    """List every pretrained weights of the installed architectures, with its licence and whether it is cached."""
    from .. import registry, zoo  # lazy: keeps `esr --help` fast

    if ctx.invoked_subcommand is not None:
        return
    reg = registry.default_registry()
    rows = [dict(name=w.name, arch=arch.name, scale=w.scale, variant=w.variant, params=w.params, license=w.license,
                 source=w.source, url=w.url, sha256=w.sha256, cached=zoo.is_cached(w),
                 reference_psnr=w.reference_psnr, challenge=dataclasses.asdict(w.challenge) if w.challenge else None)
            for arch in reg.architectures.values() for w in arch.weights]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table([[r["name"], r["arch"], f"x{r['scale']}", _count(r["params"]), _licence(r["license"]),
             r["source"].removeprefix("https://github.com/"), "yes" if r["cached"] else "no"] for r in rows],
           ["name", "arch", "scale", "params", "licence", "source", "cached"])
    if bare := [a.name for a in reg.architectures.values() if not a.weights]:
        typer.echo(f"\nArchitectures without pretrained weights (use --model PATH): {', '.join(bare)}")


@app.command()
def info(name: NameArg, scale: ScaleOpt = None) -> None:
    """Source, paper, licence, parameters, published and measured PSNR, and the cache path of one model."""
    from .. import registry, zoo  # lazy: keeps `esr --help` fast

    arch, w = zoo.resolve(registry.default_registry(), name, scale)
    path = zoo.cached_path(w)
    lines = [("name", w.name), ("architecture", arch.name), ("variant", w.variant), ("scale", f"x{w.scale}"),
             ("paper", arch.paper), ("source", w.source), ("url", w.url), ("sha256", w.sha256),
             ("licence", _licence(w.license)), ("parameters", f"{w.params:,}"),
             ("input range", f"0-{arch.input_range:g}")]
    lines += [(f"published {dataset}", f"{psnr:.2f} dB" + (f" / SSIM {ssim:.4f}" if ssim is not None else ""))
              for dataset, (psnr, ssim) in w.published.items()]
    if w.reference_psnr is not None:
        lines.append(("measured Set5", f"{w.reference_psnr:.4f} dB (Y channel, authors' code, official LR)"))
    if c := w.challenge:
        ranks = ", ".join(f"{track} #{rank}" for track, rank in c.ranks.items())
        lines.append(("challenge", f"{c.event}{f' ({c.team})' if c.team else ''}{f': {ranks}' if ranks else ''}"))
    lines.append(("cached", str(path) if path.is_file() else f"no (would be {path})"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        if value:
            typer.echo(f"{key:<{width}}  {value}")


@app.command()
def download(names: Annotated[list[str] | None, typer.Argument(help="Model names.", show_default=False)] = None,
             all_: Annotated[bool, typer.Option("--all", help="Every pretrained weights.")] = False,
             scale: ScaleOpt = None,
             quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False) -> None:
    """Download weights into the cache (sha256-checked), printing each cached path."""
    from ..errors import DownloadError
    from .. import registry, zoo  # lazy: keeps `esr --help` fast

    reg = registry.default_registry()
    if all_ == bool(names):
        raise typer.BadParameter("name some models, or pass --all (not both)")
    chosen = reg.weights() if all_ else [zoo.resolve(reg, name, scale)[1] for name in names]
    failed = 0
    for w in chosen:
        try:
            typer.echo(f"{w.name}  {zoo.fetch(w, quiet=quiet)}")
        except DownloadError as e:
            failed += 1
            typer.echo(f"esr: error: {e}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def remove(name: NameArg, scale: ScaleOpt = None) -> None:
    """Delete one model's file from the cache."""
    from .. import registry, zoo  # lazy: keeps `esr --help` fast

    _, w = zoo.resolve(registry.default_registry(), name, scale)
    path = zoo.cached_path(w)
    typer.echo(f"removed {path}" if zoo.remove(w) else f"{w.name} is not cached")


@app.command()
def verify() -> None:
    """Re-hash every file in the cache; exits 1 if any does not match its sha256."""
    from .. import zoo  # lazy: keeps `esr --help` fast

    results = zoo.verify()
    for path, ok in results:
        typer.echo(f"{'ok ' if ok else 'BAD'}  {path}")
    bad = sum(not ok for _, ok in results)
    advice = " (remove them and download again)" if bad else ""
    typer.echo(f"{len(results)} files in {zoo.cache_dir()}, {bad} bad{advice}")
    if bad:
        raise typer.Exit(1)


@app.command()
def interpolate(
        a: Annotated[str, typer.Argument(help="Zoo name or weights file (alpha 1).")],
        b: Annotated[str, typer.Argument(help="Zoo name or weights file of the same architecture and config "
                                              "(alpha 0).")],
        alpha: Annotated[float, typer.Option(min=0, max=1, callback=finite,
                                             help="Weight of A: alpha * A + (1 - alpha) * B, 0 to 1.")] = ...,
        output: Annotated[Path, typer.Option("-o", "--output", help="Output file (.pth or .safetensors).")] = ...,
        arch: ArchOpt = None,
        scale: ScaleOpt = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False) -> None:
    """Network interpolation: blend two checkpoints weight by weight into a file that --model loads."""
    from ..interpolation import interpolate as blend_models, save_state_dict

    if output.suffix.lower() not in (".pth", ".pt", ".safetensors"):
        raise typer.BadParameter(f"{output}: name a .pth or .safetensors file", param_hint="'-o'")
    match = blend_models(a, b, alpha, scale=scale, arch=arch, quiet=quiet)
    save_state_dict(match.state_dict, output)
    typer.echo(f"{output}: {match.architecture.name} {match.config}, {alpha:g} x {a} + {1 - alpha:g} x {b}")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _licence(spdx: str) -> str:
    return "none (no licence)" if spdx.lower() == "none" else spdx
