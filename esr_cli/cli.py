"""The `esr` command: a table of contents over the command modules. Nothing here imports torch."""

from __future__ import annotations

import sys

import typer

from . import __version__
from .commands import benchmark, evaluate, export, models, plugins, prune, train, upscale, video

app = typer.Typer(
    help="Image and video super-resolution with the NTIRE efficient-SR networks (RLFN, IMDN, RFDN, MDRN, SAFMN, ...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: no `<bool>` metavar on flags, no markup to escape
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"esr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """esr: upscale images and videos, evaluate, benchmark and train SR networks."""


app.command("upscale")(upscale.upscale)
app.command("video")(video.video)
app.command("evaluate")(evaluate.evaluate)
app.command("benchmark")(benchmark.benchmark)
app.command("export")(export.export)
app.command("train")(train.train)
app.command("finetune")(train.finetune)
app.command("prune")(prune.prune)
app.add_typer(models.app, name="models")
app.command("plugins")(plugins.plugins)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    from .errors import EsrError

    try:
        app()
    except EsrError as e:
        print(f"esr: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("esr: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
