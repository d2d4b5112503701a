"""The contract check, importable by any plugin's test suite: `check_architecture(arch)`."""

from __future__ import annotations

import dataclasses

from .architecture import Architecture
from .errors import AmbiguousModel
from .loaded import LoadedModel
from .registry import Registry, default_registry


def check_architecture(arch: Architecture, registry: Registry | None = None, config=None) -> None:
    """For every declared scale: build, detect among all installed architectures, read the config back,
    load with strict=True and check the output size of a forward pass. Raises AssertionError."""
    import torch

    registry = registry or default_registry()
    others = Registry.of(*[a for a in registry.architectures.values() if a.name != arch.name], arch)
    assert dataclasses.is_dataclass(arch.config), f"{arch.name}: config must be a dataclass"
    assert "scale" in {f.name for f in dataclasses.fields(arch.config)}, f"{arch.name}: config needs a scale field"
    assert arch.input_range in (1.0, 255.0), f"{arch.name}: input_range must be 1 or 255"
    for scale in arch.scales:
        cfg = dataclasses.replace(config, scale=scale) if config is not None else arch.config(scale=scale)
        torch.manual_seed(0)
        model = arch.build(cfg).eval()
        state = model.state_dict()
        try:
            match = others.detect(state, scale=scale)
        except AmbiguousModel as e:  # a layout shared with another architecture: the user picks with --arch
            assert arch.name in e.candidates, f"{arch.name} x{scale}: fits {e.candidates}, not itself"
            match = others.detect(state, scale=scale, arch=arch.name)
        assert match.architecture.name == arch.name, f"{arch.name} x{scale}: detected as {match.architecture.name}"
        assert match.config == cfg, f"{arch.name} x{scale}: read {match.config}, built {cfg}"
        fresh = arch.build(match.config)
        fresh.load_state_dict(match.state_dict, strict=True)
        side = 16 * arch.size_multiple
        out = LoadedModel(fresh, arch, match.config).for_inference()(torch.rand(1, 3, side, side + arch.size_multiple))
        expected = (1, 3, side * scale, (side + arch.size_multiple) * scale)
        assert tuple(out.shape) == expected, f"{arch.name} x{scale}: output {tuple(out.shape)}, expected {expected}"
        assert torch.isfinite(out).all(), f"{arch.name} x{scale}: non-finite output"
    for w in arch.weights:
        assert w.scale in arch.scales, f"{w.name}: scale {w.scale} not among {arch.scales}"
        assert w.url.startswith("https://"), f"{w.name}: url must be https"
        assert len(w.sha256) == 64, f"{w.name}: sha256 must be 64 hex digits"
        assert w.name.endswith(f"-x{w.scale}"), f"{w.name}: name must end in -x{w.scale}"
