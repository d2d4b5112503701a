"""`esr plugins`: the discovered architecture plugins, and the ones that failed to load."""

from __future__ import annotations

import json

import typer


def plugins(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the architecture plugins (entry points of `esr.architectures`) with their distribution and version."""
    from ..registry import default_registry

    infos = default_registry().plugins
    if as_json:
        typer.echo(json.dumps([vars(i) for i in infos], indent=2))
        return
    if not infos:
        typer.echo("no architecture plugins installed (pip install one, e.g. plugins/esr-rfdn)")
        return
    width = max(len(i.name) for i in infos)
    for i in infos:
        status = f"FAILED: {i.error}" if i.error else "ok"
        typer.echo(f"{i.name:<{width}}  {i.distribution} {i.version}  {i.value}  {status}")
