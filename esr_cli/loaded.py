"""A loaded network and the one way it is fed: input range, precision, memory format and device.

Everything that runs a network (the engine's tiles, evaluation, training and its validation, the benchmark, the
contract check) goes through `LoadedModel`. Images are float tensors in [0, 1]; the network's own input range,
weight dtype, channels-last layout and the fp32 rules of CUDA are this module's business only.

Inference in fp16 or bf16 converts the weights (and so every activation) to that dtype, once: no per-forward
weight casts, half the weight and activation traffic. An fp32 copy of the weights stays on the host for the
fallback: a forward whose low-precision output is not finite is rerun with it. Training keeps fp32 weights and
autocasts (`train_forward`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import tiling
from .architecture import Architecture, Weights
from .errors import EsrError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        raise EsrError(f"--device {device}: choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise EsrError(f"--device {device}: choose auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EsrError("--device cuda: no CUDA GPU is available (is the CUDA build of PyTorch installed?)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise EsrError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EsrError("--device mps: Apple MPS is not available on this machine")
    return device


def cpu_has_native_bf16() -> bool:
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, device: torch.device, architecture: Architecture) -> str:
    """`auto`: fp16 on CUDA, bf16 on a CPU with native bf16, where the architecture declares it safe; else fp32."""
    if precision != "auto":
        if precision not in DTYPES:
            raise EsrError(f"--precision {precision}: choose auto, fp32, fp16 or bf16")
        return precision
    if device.type == "cuda":
        wanted = ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    elif device.type == "cpu":
        wanted = ["bf16"] if cpu_has_native_bf16() else []
    else:
        wanted = ["fp16"]
    return next((p for p in wanted if p in architecture.precisions), "fp32")


@contextlib.contextmanager
def precision_scope(device: torch.device, precision: str) -> Iterator[None]:
    """For fp32 on CUDA, TF32 off (PyTorch's default on Ampere+ would shift the published figures), restored on
    exit so that the rest of the process keeps its own setting. Low precisions need nothing: the weights are
    converted (`LoadedModel.for_inference`)."""
    if precision != "fp32" or device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclass
class LoadedModel:
    """A network with its architecture, config, zoo entry and source, on a device at a precision.

    `forward(x01)` is inference: [0, 1] in, [0, 1] out, with an fp32 rerun when low precision overflows.
    `train_forward(x01)` is the same feeding with gradients and without the clamp."""

    module: nn.Module
    architecture: Architecture
    config: Any
    weights: Weights | None = None
    source: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    fallbacks: int = 0
    """How many forwards were rerun in fp32 because low precision gave non-finite values."""

    channels_last: bool = False
    """Inputs and weights channels-last (inference on a CPU: faster convolutions there)."""

    dtype: torch.dtype = torch.float32
    """The dtype of the weights and of what the network is fed: the precision's once `for_inference` ran."""

    reference: nn.Module | None = field(default=None, repr=False)
    """The fp32 network kept for the fallback of a low-precision one (on the host until first needed)."""

    def __post_init__(self) -> None:
        self.module.to(self.device)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def name(self) -> str:
        return self.weights.name if self.weights else self.source or self.architecture.name

    def for_inference(self) -> LoadedModel:
        """Eval mode, no gradients; weights in the precision's dtype (an fp32 copy kept); channels-last on a CPU."""
        self.module.eval().requires_grad_(False)
        if self.device.type == "cpu":
            self.module.to(memory_format=torch.channels_last)
            self.channels_last = True
        if self.precision != "fp32" and self.reference is None:
            self.reference = copy.deepcopy(self.module).cpu()
            self.module.to(DTYPES[self.precision])
            self.dtype = DTYPES[self.precision]
        return self

    def network_input(self, x01: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """x in [0, 1] as the network takes it: on its device, in its range, dtype and memory format."""
        x = (x01.to(self.device, non_blocking=True) * self.architecture.input_range).to(dtype or self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def running(self, precision: str | None = None):
        """The context every inference forward runs in: no autograd, this model's precision rules."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(precision_scope(self.device, precision or self.precision))
        return stack

    def forward(self, x01: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] (any device) -> (N, 3, sh, sw) float in [0, 1] on the model's device."""
        with self.running(), tiling.running(window):
            y = self.module(self.network_input(x01)).float()
        if self.reference is not None and not torch.isfinite(y).all():
            self.fallbacks += 1
            self.reference.to(self.device)  # once: it stays there for the next fallback
            with self.running("fp32"), tiling.running(window):
                y = self.reference(self.network_input(x01, torch.float32)).float()
        return (y / self.architecture.input_range).clamp_(0, 1)

    __call__ = forward

    def train_forward(self, x01: torch.Tensor) -> torch.Tensor:
        """The same feeding with gradients (training): output in [0, 1] units, not clamped, float32. TF32 is left
        as the process has it (a training speed choice)."""
        amp = self.precision != "fp32"
        with torch.autocast(self.device.type, dtype=DTYPES[self.precision], enabled=amp):
            y = self.module(self.network_input(x01))
        return y.float() / self.architecture.input_range
