"""Network interpolation (ESRGAN's, Real-ESRGAN's `-dn`): the weights alpha * A + (1 - alpha) * B of two
checkpoints of one architecture and config, as a state dict or a weights file that `--model` loads."""

from __future__ import annotations

import io
from pathlib import Path

from .architecture import StateDict
from .errors import EsrError
from .registry import Match, Registry


def blend(a: StateDict, b: StateDict, alpha: float) -> dict:
    """alpha * a + (1 - alpha) * b for every floating-point tensor (alpha 1 gives a, 0 gives b, exactly); other
    tensors (counters, indices) are copied from `a`. Both must have the same keys and shapes."""
    if a.keys() != b.keys():
        raise EsrError(f"the checkpoints have different tensors ({', '.join(sorted(a.keys() ^ b.keys())[:3])})")
    out = {}
    for key, x in a.items():
        y = b[key]
        if x.shape != y.shape:
            raise EsrError(f"{key}: shapes differ ({tuple(x.shape)} vs {tuple(y.shape)})")
        out[key] = alpha * x + (1 - alpha) * y if x.is_floating_point() else x.clone()
    return out


def interpolate(a: str | Path, b: str | Path, alpha: float, scale: int | None = None, arch: str | None = None,
                registry: Registry | None = None, quiet: bool = False) -> Match:
    """Locate `a` and `b` (zoo names or files, as `--model` does) and blend them: a Match whose tensors are
    alpha * a + (1 - alpha) * b. Refuses two architectures, or two configs of one."""
    from .models import locate

    first, _ = locate(a, scale=scale, arch=arch, registry=registry, quiet=quiet)
    second, _ = locate(b, scale=scale, arch=arch, registry=registry, quiet=quiet)
    if first.architecture.name != second.architecture.name:
        raise EsrError(f"cannot interpolate {a} ({first.architecture.name}) with {b} ({second.architecture.name}): "
                       "different architectures")
    if first.config != second.config:
        raise EsrError(f"cannot interpolate {a} with {b}: {first.architecture.name} configs differ "
                       f"({first.config} vs {second.config})")
    return Match(first.architecture, first.config, blend(first.state_dict, second.state_dict, alpha))


def save_state_dict(state_dict: StateDict, path: str | Path) -> Path:
    """Write a plain state dict atomically: safetensors for a `.safetensors` name, else a torch file."""
    import torch

    from .images import atomic_write

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        data = save(tensors)
    else:
        buf = io.BytesIO()
        torch.save(tensors, buf)
        data = buf.getvalue()
    atomic_write(path, data)
    return path
