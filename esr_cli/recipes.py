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
    "model": {"arch": "", "scale": 4, "config": {}, "init": "", "reparam": False},
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
        recipe = override(recipe, item)
    return recipe


def override(recipe: Mapping, item: str) -> dict:
    """`--set a.b=value` over the recipe, and over every stage that sets a.b itself: the command line wins over
    the file everywhere (`--set train.iters=10` makes every stage short)."""
    value = assignment(item)
    out = merge(recipe, value, replace=False)
    for stage in out.get("stages") or []:
        if isinstance(stage, dict):  # a stage's `name` is its own, not the recipe's
            _replace_present(stage, {k: v for k, v in value.items() if k != "name"})
    return out


def _replace_present(table: dict, value: Mapping) -> None:
    for key, v in value.items():
        if key not in table:
            continue
        if isinstance(v, Mapping) and isinstance(table[key], dict):
            _replace_present(table[key], v)
        else:
            table[key] = copy.deepcopy(v)


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
        prune = stage.pop("prune", None)
        merged = merge(base, stage)
        if prune is not None:
            merged["prune"] = prune_table(prune, name)
        out.append((name, merged))
    return out


def prune_table(prune, stage: str) -> dict:
    """A stage's `prune = { channels = N }`: that stage cuts the weights it starts from to N feature channels
    (`esr prune`) instead of training; the stages after it train the smaller network."""
    channels = prune.get("channels") if isinstance(prune, Mapping) else None
    if (not isinstance(prune, Mapping) or set(prune) != {"channels"} or isinstance(channels, bool)
            or not isinstance(channels, int) or channels < 1):
        raise EsrError(f"recipe: stage {stage}: prune = {prune!r}: expected {{ channels = N }} with N >= 1")
    return {"channels": channels}


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
    if val:  # the realworld pipeline starts from HR images: its validation folder holds prepared pairs
        recipe["val"].update(folder=val, degrade=recipe["degrade"].get("pipeline") != "realworld")
    for item in overrides:
        recipe = override(recipe, item)
    return recipe


LIMITS = {  # key: (lowest, highest, lowest allowed itself); None = unbounded
    "seed": (0, None, True), "model.scale": (1, 16, True), "data.patch": (4, None, True), "data.batch": (1, None, True),
    "data.repeat": (0, None, True), "data.workers": (0, 256, True), "optim.lr": (0, None, False),
    "optim.weight_decay": (0, None, True), "optim.grad_clip": (0, None, True), "schedule.gamma": (0, None, False),
    "schedule.eta_min": (0, None, True), "schedule.warmup": (0, None, True), "train.iters": (1, None, True),
    "train.ema": (0, 1, True), "train.checkpoint_every": (1, None, True), "train.log_every": (1, None, True),
    "val.every": (1, None, True), "val.border": (0, None, True),
}
"""Ranges of the numeric recipe values; every other value only has to have its default's type."""


def validated(recipe: Mapping) -> dict:
    """The recipe with every value checked against its default's type and LIMITS, before anything runs: a typo'd
    `--set train.iters=abc` or `data.batch=0` is one line, not a traceback or an untrained model. A folder given as
    a string where a list of folders is expected (`data.train = "DIV2K"`) becomes a one-element list."""
    out = copy.deepcopy(dict(recipe))
    for table, defaults in DEFAULTS.items():
        if not isinstance(defaults, Mapping):
            out[table] = _checked(table, out.get(table, defaults), defaults)
            continue
        for key, default in defaults.items():
            if f"{table}.{key}" not in FREE and key in out.get(table, {}):
                out[table][key] = _checked(f"{table}.{key}", out[table][key], default)
    ema = out["train"]["ema"]
    if ema >= 1:
        raise EsrError(f"recipe: train.ema = {ema}: give a decay below 1 (0 = no EMA, 0.999 is usual)")
    return out


def _checked(name: str, value, default):
    import math

    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, list):
        value = [value] if isinstance(value, str) and value else value
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = {bool: "true or false", int: "a whole number", float: "a number", list: "a list", str: "a string",
                dict: "a table"}[type(default)]
        raise EsrError(f"recipe: {name} = {value!r}: expected {kind}")
    if name in LIMITS:
        lo, hi, inclusive = LIMITS[name]
        if (value < lo if inclusive else value <= lo) or (hi is not None and value > hi):
            bound = f"{'>=' if inclusive else '>'} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise EsrError(f"recipe: {name} = {value!r}: must be {bound}")
    return value
