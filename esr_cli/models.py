"""Resolving a model reference (a zoo name or a weights file) into a ready Upscaler."""

from __future__ import annotations

from pathlib import Path

from .engine import Upscaler, resolve_device, resolve_precision
from .errors import BadWeights, EsrError
from .registry import Match, Registry, try_architecture

WEIGHT_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}


def is_path(ref: str) -> bool:
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref or Path(ref).is_file()


def load_model(ref: str | Path, scale: int | None = None, device: str = "auto", precision: str = "auto",
               tile: int | str = 0, tile_overlap: int | None = None, batch_size: int = 4,
               registry: Registry | None = None, quiet: bool = False) -> Upscaler:
    """A zoo name (`rlfn`, `rlfn-s-x2`) or a weights file (architecture detected) -> Upscaler on `device`."""
    from .checkpoint import read_state_dict
    from .registry import default_registry  # looked up at call time, so tests can swap it

    registry = registry or default_registry()
    ref = str(ref)
    weights = None
    if is_path(ref):
        match = registry.detect(read_state_dict(ref), scale)
        if scale is not None and match.config.scale != scale:
            raise EsrError(f"{ref} is a x{match.config.scale} model; --scale {scale} was asked for")
    else:
        from .zoo import fetch, resolve

        arch, weights = resolve(registry, ref, scale)
        path = fetch(weights, quiet=quiet)
        match = try_architecture(arch, read_state_dict(path), weights.scale)
        if not isinstance(match, Match):
            raise BadWeights(f"{path} does not fit {arch.name}: {match[2]}")
    return build(match, weights=weights, source=ref, device=device, precision=precision,
                 tile=tile, tile_overlap=tile_overlap, batch_size=batch_size)


def build(match: Match, weights=None, source: str = "", device: str = "auto", precision: str = "auto",
          **engine) -> Upscaler:
    """Instantiate the matched architecture with its tensors (strict) and wrap it in an Upscaler."""
    arch = match.architecture
    module = arch.build(match.config)
    try:
        module.load_state_dict(dict(match.state_dict), strict=True)
    except RuntimeError as e:
        raise BadWeights(f"{source}: tensors do not fit {arch.name} {match.config}: {str(e).splitlines()[0]}") from None
    dev = resolve_device(device)
    return Upscaler(module, arch, match.config, weights=weights, device=dev,
                    precision=resolve_precision(precision, dev, arch), source=source, **engine)

