"""`esr export` to `.safetensors` / `.pth`: the deploy-layout state dict alone, checked to be detected back as the
same architecture and config (or told which --arch / --scale `--model FILE` needs)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import torch

from .errors import EsrError, UnknownModel
from .loaded import LoadedModel


def to_weights(model: LoadedModel, fmt: str, fp16: bool = False, source: str = "") -> tuple[bytes, str]:
    """The state dict of `model` as a .safetensors or .pth file (bytes), checked to load back as the same
    architecture and config, and the options `--model FILE` needs for that (when the tensors alone cannot tell)."""
    from .checkpoint import canonicalize

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.module.state_dict().items()}
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if fmt == "safetensors":
        from safetensors.torch import load, save

        data = save(state, metadata={"architecture": model.architecture.name, "scale": str(model.scale),
                                     "source": source})
        back = load(data)
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        back = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return data, loading_options(model, canonicalize(back))


def loading_options(model: LoadedModel, state: Mapping[str, torch.Tensor]) -> str:
    """"" when detection alone finds `model`'s architecture and config in `state`, else the --arch / --scale that
    make it; EsrError when nothing does."""
    from .registry import default_registry

    registry, arch = default_registry(), model.architecture.name
    for options, kwargs in (("", {}), (f"--arch {arch}", {"arch": arch}),
                            (f"--arch {arch} --scale {model.scale}", {"arch": arch, "scale": model.scale})):
        try:
            match = registry.detect(state, source="the exported weights", **kwargs)
        except UnknownModel:
            continue
        if match.architecture.name == arch and match.config == model.config:
            return f"load it with --model FILE {options}" if options else ""
    raise EsrError(f"{model.name}: the exported tensors are not detected back as {arch} {model.config}; "
                   f"no file written")
