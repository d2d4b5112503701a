"""Reading checkpoint files safely into a plain state dict (no arbitrary unpickling)."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

from .architecture import StateDict
from .errors import BadWeights, first_line, shown

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
PREFIXES = ("module.", "netG.", "model_ema.")


def read_state_dict(path: str | Path) -> dict:
    """Load `path` (.safetensors, or a torch file read with weights_only=True) and unwrap it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise BadWeights(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                loaded = load_file(str(path))
            except Exception as e:  # SafetensorError: a lying header, a truncated file, not safetensors at all
                raise BadWeights(f"{shown(path)}: not a readable safetensors file ({first_line(e)[:160]})") from None
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise BadWeights(f"{path}: refused to load (it is not plain tensors: {first_line(e)[:160]})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise BadWeights(f"{path}: not a readable checkpoint (truncated or corrupt?): {first_line(e)[:160]}") from None
    return canonicalize(loaded, path)


def canonicalize(loaded: object, origin: object = "checkpoint") -> dict:
    """Unwrap `params_ema`/`params`/`state_dict`/`model` (EMA first) and strip `module.`-style prefixes."""
    import torch

    while isinstance(loaded, dict):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(loaded.get(k), dict)), None)
        if wrapper is None:
            break
        loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not loaded:
        raise BadWeights(f"{origin}: holds no state dict")
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise BadWeights(f"{origin}: holds no tensors")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def count_params(state_dict: StateDict) -> int:
    """Elements of every floating-point tensor (what the papers call parameters)."""
    return sum(v.numel() for v in state_dict.values() if v.is_floating_point())


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
