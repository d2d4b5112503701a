"""ncnn export (`.param` + `.bin`, through pnnx), checked by the ncnn runtime: the network alone with its input range
folded in, RGB in [0, 1] in and out, blobs named as Real-ESRGAN-ncnn-vulkan and upscayl call them. An ncnn graph
cannot pad itself, so networks that need a size multiple are refused, and ops ncnn has no layer for are named."""

from __future__ import annotations

import copy
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import EsrError, first_line
from .export import FP16_TOLERANCE, TOLERANCE, Agreement, check, check_inputs
from .loaded import LoadedModel

NCNN_INPUT, NCNN_OUTPUT = "data", "output"
"""The blob names Real-ESRGAN-ncnn-vulkan (and upscayl, which runs it) feed and read."""
PNNX_TIMEOUT_S = 1800


class PlainNetwork(nn.Module):
    """The network with its input range folded in: (1, 3, h, w) RGB in [0, 1] -> (1, 3, s*h, s*w) in [0, 1]."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        self.net = copy.deepcopy(model.module).eval().float().to(memory_format=torch.contiguous_format)
        self.range = model.architecture.input_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x * self.range) / self.range).clamp(0, 1)


def to_ncnn(model: LoadedModel, fp16: bool = False,
            image: torch.Tensor | None = None) -> tuple[bytes, bytes, Agreement]:
    """The checked ncnn .param (text, blobs `data` -> `output`) and .bin of `model` through pnnx, and what the
    check saw; EsrError when the network cannot be an ncnn graph or ncnn disagrees with PyTorch."""
    import pnnx

    arch = model.architecture
    if arch.size_multiple > 1:
        raise EsrError(f"{model.name}: an ncnn graph cannot pad itself, and {arch.name} needs sides that are "
                       f"multiples of {arch.size_multiple} (ncnn runners feed tiles of any size); export to ONNX")
    side = max(arch.min_size, 16)
    shapes = [(1, 3, side + 24, side + 32), (1, 3, side + 40, side + 8)]  # two sizes: pnnx keeps them dynamic
    with tempfile.TemporaryDirectory(prefix="esr-ncnn-") as folder:
        work = Path(folder)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.jit.trace(PlainNetwork(model), torch.rand(*shapes[0]), check_trace=False).save(
                    str(work / "net.pt"))
            except Exception as e:
                raise EsrError(f"{model.name}: cannot trace the network for pnnx ({first_line(e)[:300]})") from None
        outputs = {"pnnxparam": "net.pnnx.param", "pnnxbin": "net.pnnx.bin", "pnnxpy": "net_pnnx.py",
                   "pnnxonnx": "net.pnnx.onnx", "ncnnparam": "net.param", "ncnnbin": "net.bin", "ncnnpy": "net_ncnn.py"}
        command = [pnnx.EXEC_PATH, str(work / "net.pt"), f"inputshape=[{','.join(map(str, shapes[0]))}]f32",
                   f"inputshape2=[{','.join(map(str, shapes[1]))}]f32", f"fp16={int(fp16)}",
                   *[f"{key}={work / name}" for key, name in outputs.items()]]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S, cwd=work)
        except subprocess.TimeoutExpired:
            raise EsrError(f"{model.name}: pnnx did not finish in {PNNX_TIMEOUT_S} s") from None
        if done.returncode or not (work / "net.param").is_file():
            said = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise EsrError(f"{model.name}: pnnx failed (exit {done.returncode}): {said[-1][:300] if said else ''}")
        param = (work / "net.param").read_text()
        missing = unconverted(param)
        if missing:
            raise EsrError(f"{model.name}: ncnn has no layer for {', '.join(missing)} (left unconverted by pnnx); "
                           f"export to ONNX")
        param = rename_blobs(param, {"in0": NCNN_INPUT, "out0": NCNN_OUTPUT})
        (work / "net.param").write_text(param)
        run = ncnn_runner(work / "net.param", work / "net.bin", model.name, fp16)
        inputs = check_inputs([(1, side + 8, side + 16), (1, side + 5, side + 3)], image)
        if image is not None and min(image.shape[-2:]) < arch.min_size:
            raise EsrError(f"--check-image: the ncnn graph does not pad; give an image of at least {arch.min_size} "
                           f"pixels a side")
        agreement = check(model, run, inputs, FP16_TOLERANCE if fp16 else TOLERANCE, "ncnn", exact=not fp16)
        return param.encode(), (work / "net.bin").read_bytes(), agreement


def unconverted(param: str) -> list[str]:
    """The layer types of an ncnn .param that ncnn does not have (pnnx leaves `F.pad`, `torch.var`,
    `pnnx.Expression`, ... as they are when it cannot map them)."""
    return sorted({line.split()[0] for line in param.splitlines()[2:] if line.strip() and "." in line.split()[0]})


def rename_blobs(param: str, names: Mapping[str, str]) -> str:
    """An ncnn .param with blobs (and the input layer) renamed. A layer line is: type, name, #inputs, #outputs,
    the input then output blob names, then key=value parameters."""
    lines = param.splitlines()
    for i, line in enumerate(lines[2:], start=2):
        fields = line.split()
        if len(fields) < 4:
            continue
        blobs = 4 + int(fields[2]) + int(fields[3])
        fields[1:2] = [names.get(fields[1], fields[1])]
        fields[4:blobs] = [names.get(f, f) for f in fields[4:blobs]]
        lines[i] = " ".join(fields)
    return "\n".join(lines) + "\n"


def ncnn_runner(param: Path, weights: Path, name: str, fp16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batches through ncnn's CPU runtime, one image at a time (fp32 arithmetic unless `fp16`)."""
    import ncnn
    import numpy as np

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = torch.get_num_threads()
    if not fp16:
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    if net.load_param(str(param)) or net.load_model(str(weights)):
        raise EsrError(f"{name}: ncnn cannot load the converted graph")

    def run(x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for image in x:
            extractor = net.create_extractor()
            extractor.input(NCNN_INPUT, ncnn.Mat(np.ascontiguousarray(image.numpy())).clone())
            status, out = extractor.extract(NCNN_OUTPUT)
            if status:
                raise EsrError(f"{name}: ncnn failed on a {tuple(image.shape)} input (status {status})")
            outputs.append(torch.from_numpy(np.array(out)))
        return torch.stack(outputs)

    return run


def upscayl_scale(stem: str) -> int:
    """The scale upscayl assumes for a custom model from its name: x2/2x, x3/3x, else 4."""
    name = stem.lower()
    return 2 if "x2" in name or "2x" in name else 3 if "x3" in name or "3x" in name else 4


# ---- weights -------------------------------------------------------------------------------------
