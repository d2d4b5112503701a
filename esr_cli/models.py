"""Resolving a model reference (a zoo name or a weights file) into a ready Upscaler."""

from __future__ import annotations

from pathlib import Path

from .architecture import Architecture, Weights
from .engine import Upscaler
from .loaded import LoadedModel, resolve_device, resolve_precision
from .errors import BadWeights, EsrError, first_line
from .registry import Match, Registry, try_architecture

WEIGHT_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}


def is_path(ref: str) -> bool:
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref or Path(ref).is_file()


def load_model(ref: str | Path, scale: int | None = None, device: str = "auto", precision: str = "auto",
               tile: int | str = 0, tile_overlap: int | None = None, batch_size: int = 4,
               registry: Registry | None = None, quiet: bool = False, arch: str | None = None,
               denoise: float | None = None) -> Upscaler:
    """A zoo name (`rlfn`, `rlfn-s-x2`) or a weights file -> Upscaler on `device` (see `locate`). `denoise` S in
    [0, 1] blends a model with its `denoise_partner`: S * its weights + (1 - S) * the partner's."""
    match, weights = locate(ref, scale=scale, arch=arch, registry=registry, quiet=quiet)
    source = str(ref)
    if denoise is not None:
        match = with_denoise(match, weights, denoise, source, registry=registry, quiet=quiet)
        source = f"{ref} (denoise {denoise:g})"
    return build(match, weights=weights, source=source, device=device, precision=precision,
                 tile=tile, tile_overlap=tile_overlap, batch_size=batch_size)


def denoise_partner(ref: str | Path, scale: int | None = None, registry: Registry | None = None) -> str | None:
    """The `denoise_partner` of the zoo entry that `ref` names (a name, or a zoo file by its sha256), without
    downloading anything; None when it has none or is no zoo entry."""
    from .checkpoint import sha256_of
    from .errors import UnknownModel
    from .registry import default_registry
    from .zoo import resolve

    registry = registry or default_registry()
    if is_path(ref):
        known = registry.by_sha256(sha256_of(ref)) if Path(ref).is_file() else None
    else:
        try:
            known = resolve(registry, str(ref), scale)
        except UnknownModel:
            known = None
    return known[1].denoise_partner if known else None


def denoise_models(registry: Registry | None = None) -> list[str]:
    """Names of the zoo entries that `--denoise` works with."""
    from .registry import default_registry

    return [w.name for w in (registry or default_registry()).weights() if w.denoise_partner]


def with_denoise(match: Match, weights: Weights | None, strength: float, source: str,
                 registry: Registry | None = None, quiet: bool = False) -> Match:
    """`match` blended with its zoo entry's denoise partner (network interpolation, strength = its weight)."""
    from .interpolation import blend

    if weights is None or not weights.denoise_partner:
        supported = ", ".join(denoise_models(registry)) or "none installed"
        raise EsrError(f"--denoise: {source} has no denoise partner (models that support it: {supported})")
    if not 0 <= strength <= 1:
        raise EsrError(f"--denoise {strength}: give a strength from 0 to 1")
    partner, _ = locate(weights.denoise_partner, registry=registry, quiet=quiet)
    if partner.architecture.name != match.architecture.name or partner.config != match.config:
        raise BadWeights(f"{weights.denoise_partner} is not the same network as {weights.name}")
    return Match(match.architecture, match.config, blend(match.state_dict, partner.state_dict, strength))


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
        raise BadWeights(f"{source}: tensors do not fit {arch.name} {match.config}: {first_line(e)}") from None
    dev = resolve_device(device)
    return LoadedModel(module, arch, match.config, weights=weights, source=source, device=dev,
                       precision=resolve_precision(precision, dev, arch))
