"""Resolving a model reference (a zoo name or a weights file) into a ready Upscaler."""

from __future__ import annotations

from pathlib import Path

from .architecture import Architecture, Weights
from .engine import Upscaler
from .loaded import LoadedModel, resolve_device, resolve_precision
from .errors import BadWeights, EsrError
from .registry import Match, Registry, try_architecture

WEIGHT_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}


def is_path(ref: str) -> bool:
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref or Path(ref).is_file()


def load_model(ref: str | Path, scale: int | None = None, device: str = "auto", precision: str = "auto",
               tile: int | str = 0, tile_overlap: int | None = None, batch_size: int = 4,
               registry: Registry | None = None, quiet: bool = False, arch: str | None = None) -> Upscaler:
    """A zoo name (`rlfn`, `rlfn-s-x2`) or a weights file -> Upscaler on `device` (see `locate`)."""
    match, weights = locate(ref, scale=scale, arch=arch, registry=registry, quiet=quiet)
    return build(match, weights=weights, source=str(ref), device=device, precision=precision,
                 tile=tile, tile_overlap=tile_overlap, batch_size=batch_size)


def locate(ref: str | Path, scale: int | None = None, arch: str | None = None, registry: Registry | None = None,
           quiet: bool = False) -> tuple[Match, Weights | None]:
    """The architecture, config and tensors that `ref` names, and its zoo entry if it has one.

    A zoo name is fetched; a file that is a zoo file (same sha256) is its entry, whatever its name; any other file
    is detected from its shapes, and `arch` picks one where several architectures read the same tensors."""
    from .checkpoint import read_state_dict, sha256_of
    from .registry import default_registry  # looked up at call time, so tests can swap it

    registry = registry or default_registry()
    ref = str(ref)
    if is_path(ref):
        if not Path(ref).is_file():
            raise BadWeights(f"{ref}: no such weights file")
        state_dict = read_state_dict(ref)
        if known := registry.by_sha256(sha256_of(ref)):
            return _fit(*known, state_dict, ref, scale, arch), known[1]
        match = registry.detect(state_dict, scale, arch=arch, source=ref)
        if scale is not None and match.config.scale != scale:
            raise EsrError(f"{ref} is a x{match.config.scale} model; --scale {scale} was asked for")
        return match, None
    from .zoo import fetch, resolve

    found, weights = resolve(registry, ref, scale)
    path = fetch(weights, quiet=quiet)
    return _fit(found, weights, read_state_dict(path), str(path), scale, arch), weights


def _fit(arch: Architecture, weights: Weights, state_dict, source: str, scale: int | None,
         asked: str | None) -> Match:
    """The Match of a zoo file on its own architecture, or why it cannot be what was asked."""
    if asked and asked != arch.name:
        raise EsrError(f"{source} is {weights.name}, a {arch.name} model, not {asked}")
    if scale is not None and scale != weights.scale:
        raise EsrError(f"{source} is {weights.name}, a x{weights.scale} model; --scale {scale} was asked for")
    match = try_architecture(arch, state_dict, weights.scale)
    if not isinstance(match, Match):
        raise BadWeights(f"{source} does not fit {arch.name}: {match[2]}")
    return match


def build(match: Match, weights=None, source: str = "", device: str = "auto", precision: str = "auto",
          **engine) -> Upscaler:
    """Instantiate the matched architecture with its tensors (strict) and wrap it in an Upscaler."""
    return Upscaler(load(match, weights, source, device, precision), **engine)


def load(match: Match, weights=None, source: str = "", device: str = "auto", precision: str = "auto") -> LoadedModel:
    """The matched architecture built with its tensors (strict), on `device` at `precision`."""
    arch = match.architecture
    module = arch.build(match.config)
    try:
        module.load_state_dict(dict(match.state_dict), strict=True)
    except RuntimeError as e:
        raise BadWeights(f"{source}: tensors do not fit {arch.name} {match.config}: {str(e).splitlines()[0]}") from None
    dev = resolve_device(device)
    return LoadedModel(module, arch, match.config, weights=weights, source=source, device=dev,
                       precision=resolve_precision(precision, dev, arch))
