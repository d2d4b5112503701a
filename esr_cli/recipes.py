"""Recipes: TOML over the defaults, `--set` overrides, stages, and the fine-tune recipe built from a model.

A recipe is a plain dict of tables (model, data, degrade, loss, optim, schedule, train, val, stages); unknown keys of
a table with defaults are an error, so a typo never silently trains something else.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path

from . import registry as registries
from .errors import EsrError

DEFAULTS: dict = {
    "name": "run",
    "seed": 0,
    "model": {"arch": "", "scale": 4, "config": {}, "init": ""},
    "data": {"train": [], "lr": [], "patch": 96, "batch": 16, "repeat": 0, "workers": 2, "cache": "auto",
             "flip": True, "rot90": True},
    "degrade": {},
    "loss": {"L1": 1.0},
    "optim": {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "grad_clip": 0.0},
    "schedule": {"type": "constant", "milestones": [], "gamma": 0.5, "eta_min": 0.0, "warmup": 0},
    "train": {"iters": 1000, "ema": 0.0, "precision": "fp32", "device": "auto", "checkpoint_every": 500,
              "log_every": 10},
    "val": {"folder": "", "every": 500, "degrade": False, "border": 0},
    "stages": [],
}
REPLACED = {"loss", "degrade", "config"}
"""Tables that a recipe or stage replaces as a whole instead of merging key by key."""
FREE = {"model.config", "loss", "degrade"}
"""Tables whose keys are not fixed by DEFAULTS (checked where they are used)."""
def merge(base: Mapping, override: Mapping, replace: bool = True, where: str = "") -> dict:
    """`override` over `base`, table by table; unknown keys of a table that has defaults are an error.
    With `replace`, the tables in REPLACED are taken whole (a stage's [loss] is its loss, not added to L1)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        name = f"{where}.{key}".lstrip(".")
        if base and key not in base and where not in FREE:
            raise EsrError(f"recipe: unknown key {name}")
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not (replace and key in REPLACED):
            out[key] = merge(out[key], value, replace, name)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(path: Path | None, overrides: list[str] = (), base: Mapping | None = None) -> dict:
    """A TOML recipe over the defaults (or over `base`), then `--set a.b=value` (value parsed as TOML)."""
    import tomllib

    recipe = merge(DEFAULTS, base or {})
    if path is not None:
        try:
            recipe = merge(recipe, tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise EsrError(f"{path}: no such recipe") from None
        except tomllib.TOMLDecodeError as e:
            raise EsrError(f"{path}: not valid TOML ({e})") from None
    for item in overrides:
        recipe = merge(recipe, assignment(item), replace=False)
    return recipe


def assignment(item: str) -> dict:
    import tomllib

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise EsrError(f"--set {item}: expected key.sub=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def stages_of(recipe: Mapping) -> list[tuple[str, dict]]:
    """(name, recipe) of each stage: the base with the stage's tables over it; one unnamed stage if none."""
    base = {**recipe, "stages": []}
    if not recipe.get("stages"):
        return [("", copy.deepcopy(base))]
    out = []
    for i, stage in enumerate(recipe["stages"], 1):
        stage = dict(stage)
        name = str(stage.pop("name", f"stage{i}"))
        out.append((name, merge(base, stage)))
    return out


FINETUNE = {
    "data": {"patch": 96, "batch": 16},
    "optim": {"lr": 3e-4},
    "schedule": {"type": "cosine", "eta_min": 1e-6},
    "train": {"iters": 2000, "checkpoint_every": 250, "log_every": 10},
    "val": {"every": 250},
}
"""`esr finetune` without --config: the seed deck's denoise/deblur fine-tune (Adam 3e-4 -> 1e-6 cosine), CPU-sized."""


def finetune_recipe(model: str, data: list[str], degrade: list[str], val: str | None = None,
                    config: Path | None = None, overrides: list[str] = (), arch: str | None = None,
                    match=None) -> dict:
    """A recipe that starts from pretrained weights (a zoo name or a file): its architecture, config and scale."""
    from .degradations import parse_degrade
    from .models import locate

    if match is None:  # what `locate(model)` found, when the caller has it already
        match, _ = locate(model, arch=arch, registry=registries.default_registry(), quiet=True)
    config_table = {k: v for k, v in dataclasses.asdict(match.config).items() if k != "scale"}
    base = merge(merge(DEFAULTS, FINETUNE), {"name": f"finetune-{Path(model).stem}",
                            "model": {"arch": match.architecture.name, "scale": match.config.scale,
                                      "config": config_table, "init": model},
                            "data": {"train": data}})
    recipe = load_recipe(config, base=base)
    recipe = merge(recipe, {"model": base["model"], "data": {"train": data}})
    if degrade:
        recipe["degrade"] = parse_degrade(degrade)
    if val:
        recipe["val"].update(folder=val, degrade=True)
    for item in overrides:
        recipe = merge(recipe, assignment(item), replace=False)
    return recipe
