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
        if arch.train_build is not None:
            check_fusing(arch, cfg)
        if arch.prune is not None:
            check_pruning(arch, cfg, others)
    for w in arch.weights:
        assert w.scale in arch.scales, f"{w.name}: scale {w.scale} not among {arch.scales}"
        assert w.url.startswith("https://"), f"{w.name}: url must be https"
        assert len(w.sha256) == 64, f"{w.name}: sha256 must be 64 hex digits"
        assert w.name.endswith(f"-x{w.scale}"), f"{w.name}: name must end in -x{w.scale}"


def check_fusing(arch: Architecture, config, tolerance: float = 1e-5) -> None:
    """The training-time variant (random weights, float64) fuses into exactly `build(config)`'s state-dict layout
    and gives its output within `tolerance` (relative to the output's largest value, 1 at least)."""
    import torch

    from .reparam import Reparam, fused

    torch.manual_seed(0)
    net = arch.train_build(config).double().eval()
    assert any(isinstance(m, Reparam) for m in net.modules()), f"{arch.name}: train_build has no re-param blocks"
    with torch.no_grad():
        for p in net.parameters():  # off the near-zero initialisation of some branches
            p.add_(torch.randn_like(p) * 0.05)
    deploy = fused(net)
    shapes = {k: tuple(v.shape) for k, v in deploy.state_dict().items()}
    expected = {k: tuple(v.shape) for k, v in arch.build(config).state_dict().items()}
    assert shapes == expected, f"{arch.name}: the fused training network is not the deploy layout"
    side = 16 * arch.size_multiple
    x = torch.rand(1, 3, side, side + arch.size_multiple, dtype=torch.float64) * arch.input_range
    with torch.no_grad():
        y, z = net(x), deploy(x)
    error = float((y - z).abs().max() / max(1.0, float(y.abs().max())))
    assert error <= tolerance, f"{arch.name}: fused output differs by {error:.3g} (relative)"


def check_pruning(arch: Architecture, config, registry: Registry | None = None) -> None:
    """The prune hook on a random network: cut to 1 channel, it is detected as this architecture with the config
    the hook returned, has fewer parameters and runs; more channels than it has are refused with an EsrError."""
    import torch

    from .errors import EsrError
    from .pruning import prune
    from .registry import Match

    torch.manual_seed(0)
    model = arch.build(config).eval()
    state = model.state_dict()
    match = Match(arch, config, state)
    smaller = prune(match, 1, registry)
    found = (registry or default_registry()).detect(smaller.state_dict, config.scale, arch=arch.name)
    assert found.config == smaller.config, f"{arch.name}: pruned network read as {found.config}, not {smaller.config}"
    before, after = sum(t.numel() for t in state.values()), sum(t.numel() for t in smaller.state_dict.values())
    assert after < before, f"{arch.name}: pruning to 1 channel left {after} of {before} parameters"
    net = arch.build(smaller.config).eval()
    net.load_state_dict(dict(smaller.state_dict), strict=True)
    side = max(16, arch.min_size) * arch.size_multiple
    with torch.no_grad():
        out = net(torch.rand(1, 3, side, side) * arch.input_range)
    assert tuple(out.shape) == (1, 3, side * config.scale, side * config.scale), f"{arch.name}: pruned output shape"
    try:
        prune(match, 1 << 20, registry)
    except EsrError:
        pass
    else:
        raise AssertionError(f"{arch.name}: the prune hook accepted more channels than the network has")
