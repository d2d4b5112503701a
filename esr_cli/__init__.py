"""esr: image and video super-resolution with plugin architectures.

The plugin-author API (`Architecture`, `Weights`, helpers) and the user API (`load_model`,
`upscale_image`, ...) are imported lazily, so that `import esr_cli` does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

DEFAULT_MODEL = "rlfn"
"""What `esr upscale` and `esr video` run without --model: a zoo name, resolved at the scale asked for."""

_EXPORTS = {
    "Architecture": "architecture",
    "Weights": "architecture",
    "Challenge": "architecture",
    "StateDict": "architecture",
    "count_blocks": "architecture",
    "shuffle_scale": "architecture",
    "EsrError": "errors",
    "read_state_dict": "checkpoint",
    "Registry": "registry",
    "default_registry": "registry",
    "check_architecture": "testing",
    "load_model": "models",
    "Upscaler": "engine",
    "upscale_image": "upscaling",
    "upscale_files": "upscaling",
    "imresize": "resize",
    "psnr": "metrics",
    "ssim": "metrics",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'esr_cli' has no attribute {name!r}")
