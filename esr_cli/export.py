"""`esr export`: a model (zoo name or weights file) to ONNX, ncnn, safetensors or a plain .pth.

- `.onnx`: `Deployable`, the network as `esr upscale` runs one whole image: RGB in [0, 1] of any batch, height and
  width, padded at the bottom and right to the network's minimum size and size multiple exactly as the engine pads
  (reflect, or replicate where a side is too small to reflect), the network's input range folded in, the output
  cropped to scale x the input and clamped to [0, 1]. Scale, source and architecture are metadata.
- ncnn (`.param` + `.bin`, through pnnx): the network alone with its input range folded in, RGB in [0, 1] in and
  out, blobs named `data` and `output` as Real-ESRGAN-ncnn-vulkan and upscayl call them. An ncnn graph cannot pad
  itself, so networks that need a size multiple are refused, and ops that ncnn has no layer for are named.
- `.safetensors` / `.pth`: the state dict alone, in the deploy layout, loadable by `--model` through detection.

Every file is written (atomically) only after it was checked: the ONNX graph and the ncnn net are run by
onnxruntime (CPU) and ncnn (CPU) on image-like random inputs of every padding case (and on `check_image`) and must
agree with esr's own fp32 engine within `TOLERANCE` (0-1 scale, or float32's own rounding: `check`); a weights file
must be detected back as the same architecture and config.

Weights saved from a training-time network (re-parameterisable blocks of `esr_cli.reparam` unfused) are fused into
the deploy layout first with `fuse=True` (`esr export --fuse`). Whole-image operations (`esr_cli.tiling`) export as
their plain whole-image formulas: outside a tiled run that is what they compute.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import EsrError, UnknownModel, first_line, shown
from .images import atomic_write, writable_file
from .loaded import LoadedModel

FORMATS = ("onnx", "ncnn", "safetensors", "pth")
SUFFIXES = {".onnx": "onnx", ".param": "ncnn", ".safetensors": "safetensors", ".pth": "pth", ".pt": "pth"}
OPSET = 18
TOLERANCE = 1e-4
"""Largest difference (0-1 scale) between a runtime (onnxruntime, ncnn) and esr's fp32 run that a written file may
have."""
FP16_TOLERANCE = 1e-2
"""The same for `--fp16` (half-precision weights and activations inside the graph, float32 in and out)."""
MAX_SIDE = 1 << 16
"""Largest height and width the ONNX graph is traced for."""
ONNX_INSTALL = "pip install onnx onnxruntime onnxscript"
NCNN_INSTALL = "pip install pnnx ncnn"


@dataclass(frozen=True)
class Exported:
    paths: tuple[Path, ...]
    """The files written (ncnn: the .param and the .bin)."""
    format: str
    name: str
    """The model's name (zoo entry or source file)."""
    scale: int
    agreement: Agreement | None = None
    """What the check of the runtime against PyTorch saw (ONNX and ncnn)."""
    fused: int = 0
    """Re-parameterisable blocks fused from a training-time layout (`fuse=True`)."""
    note: str = ""
    """What the user needs to know to use the file (a loading option, upscayl's naming rule)."""


def format_of(path: Path, format: str | None = None) -> str:
    """--format, or the file's suffix (they must not disagree)."""
    by_suffix = SUFFIXES.get(path.suffix.lower())
    if format is None:
        if by_suffix is None:
            raise EsrError(f"{shown(path)}: cannot tell the format from the suffix; name the file .onnx, .param "
                           f"(ncnn), .safetensors or .pth, or give --format")
        return by_suffix
    fmt = "pth" if format.lower() == "pt" else format.lower()
    if fmt not in FORMATS:
        raise EsrError(f"--format {format}: choose {', '.join(FORMATS)}")
    if by_suffix is not None and by_suffix != fmt:
        raise EsrError(f"{shown(path)}: a {path.suffix} file is {by_suffix}, not {fmt}; change the suffix or --format")
    return fmt


def ncnn_paths(output: Path) -> tuple[Path, Path]:
    """The .param and .bin of an ncnn export to `output` (`x4.param` or `x4` -> x4.param, x4.bin)."""
    param = output if output.suffix.lower() == ".param" else output.with_name(output.name + ".param")
    return param, param.with_suffix(".bin")


def export_model(ref: str | Path, output: Path, format: str | None = None, fp16: bool = False,
                 arch: str | None = None, scale: int | None = None, fuse: bool = False,
                 check_image: Path | None = None, quiet: bool = False) -> Exported:
    """Load `ref` (zoo name or weights file), check and write it to `output` in `format` (default: the suffix's)."""
    output = Path(output)
    fmt = format_of(output, format)
    targets = ncnn_paths(output) if fmt == "ncnn" else (output,)
    for target in targets:  # before anything loads or downloads
        writable_file(target)
        if Path(ref).is_file() and target.exists() and target.samefile(ref):
            raise EsrError(f"-o {shown(target)}: is the input file; write the export elsewhere")
    if fmt == "onnx":
        require_onnx()
    elif fmt == "ncnn":
        require_ncnn()
    image = read_check_image(check_image) if check_image is not None else None
    model, fused = load_for_export(ref, scale=scale, arch=arch, fuse=fuse, quiet=quiet)
    done = dict(format=fmt, name=model.name, scale=model.scale, fused=fused)
    if fmt == "onnx":
        source = model.weights.url if model.weights else str(ref)
        data, agreement = to_onnx(model, source=source, fp16=fp16, image=image)
        atomic_write(output, data)
        return Exported(targets, agreement=agreement, **done)
    if fmt == "ncnn":
        from .export_ncnn import to_ncnn, upscayl_scale

        param, weights, agreement = to_ncnn(model, fp16=fp16, image=image)
        atomic_write(targets[1], weights)
        try:
            atomic_write(targets[0], param)
        except BaseException:
            targets[1].unlink(missing_ok=True)  # never a .bin without its .param
            raise
        scale_read = upscayl_scale(targets[0].stem)
        note = (f"upscayl reads the scale from the file name and would take x{scale_read}: name it "
                f"...-x{model.scale}.param" if scale_read != model.scale else "")
        return Exported(targets, agreement=agreement, note=note, **done)
    from .export_weights import to_weights

    data, note = to_weights(model, fmt, fp16=fp16, source=str(ref))
    atomic_write(output, data)
    return Exported(targets, note=note, **done)


def require_onnx() -> None:
    require(("onnx", "onnxruntime", "onnxscript"), "ONNX", ONNX_INSTALL)


def require_ncnn() -> None:
    require(("pnnx", "ncnn"), "ncnn", NCNN_INSTALL)


def require(modules: tuple[str, ...], what: str, install: str) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise EsrError(f"{what} export needs {', '.join(modules)} ({name} cannot be imported: {first_line(e)}): "
                           f"{install}") from None


def read_check_image(path: Path) -> torch.Tensor:
    from .images import read_image, to_batch

    return to_batch(read_image(path))[:1]


# ---- loading -------------------------------------------------------------------------------------

def load_for_export(ref: str | Path, scale: int | None = None, arch: str | None = None, fuse: bool = False,
                    quiet: bool = False) -> tuple[LoadedModel, int]:
    """The model `ref` names, built in its deploy layout on the CPU in fp32, and how many re-parameterisable blocks
    were fused to get there (`fuse`: the file holds a training-time layout)."""
    from .checkpoint import read_state_dict
    from .models import is_path, load, locate
    from .reparam import fuse_state_dict
    from .registry import default_registry

    ref = str(ref)
    is_file = is_path(ref) and Path(ref).is_file()
    if fuse and is_file:
        deploy, fused = fuse_state_dict(read_state_dict(ref))
        if fused:
            match = default_registry().detect(deploy, scale, arch=arch, source=ref)
            if scale is not None and match.config.scale != scale:
                raise EsrError(f"{ref} is a x{match.config.scale} model; --scale {scale} was asked for")
            return load(match, None, source=ref, device="cpu", precision="fp32"), fused
    try:
        match, weights = locate(ref, scale=scale, arch=arch, quiet=quiet)
    except UnknownModel:
        if is_file and not fuse and (blocks := fuse_state_dict(read_state_dict(ref))[1]):
            raise UnknownModel(f"{shown(ref)} holds {blocks} training-time re-parameterisable blocks "
                               f"(Conv3XC / ECB): pass --fuse to fold them into the deploy layout") from None
        raise
    return load(match, weights, source=ref, device="cpu", precision="fp32"), 0


# ---- ONNX ----------------------------------------------------------------------------------------

def pad_indices(n, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The source rows of a side of `n` pixels padded at the end to `target`: reflected (F.pad's "reflect") and
    replicated. The reflected ones are all valid (>= 0) exactly when the pad is smaller than the side."""
    rows = torch.arange(target)
    return torch.where(rows < n, rows, 2 * (n - 1) - rows), rows.clamp(max=n - 1)


class Deployable(nn.Module):
    """One network as `esr upscale` runs it on a whole image, in plain tensor ops (traceable with dynamic sizes):
    (N, 3, h, w) RGB in [0, 1] -> (N, 3, s*h, s*w) in [0, 1]."""

    def __init__(self, model: LoadedModel, fp16: bool = False) -> None:
        super().__init__()
        arch = model.architecture
        self.net = copy.deepcopy(model.module).eval().to(memory_format=torch.contiguous_format)
        self.net = self.net.half() if fp16 else self.net.float()
        self.range, self.scale, self.fp16 = arch.input_range, model.scale, fp16
        self.multiple, self.least = arch.size_multiple, arch.min_size

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The engine's padding (`Upscaler._pad`) as gathers: at the bottom and right up to the minimum size, then
        to the size multiple; reflect where both pads are smaller than their sides, replicate otherwise."""
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        reflect_h, edge_h = pad_indices(h, (torch.sym_max(h, self.least) + m - 1) // m * m)
        reflect_w, edge_w = pad_indices(w, (torch.sym_max(w, self.least) + m - 1) // m * m)
        reflect = (reflect_h.min() >= 0) & (reflect_w.min() >= 0)
        rows, columns = torch.where(reflect, reflect_h, edge_h), torch.where(reflect, reflect_w, edge_w)
        return x.index_select(2, rows).index_select(3, columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if self.multiple > 1 or self.least > 1:
            x = self.pad(x)
        x = x * self.range
        y = self.net(x.half() if self.fp16 else x).float()
        return (y[..., : h * self.scale, : w * self.scale] / self.range).clamp(0, 1)


def adaptive_max_pool_cells(x: torch.Tensor, size) -> torch.Tensor:
    """`F.adaptive_max_pool2d(x, size)` as gathers: along a side of n pixels, cell i of k covers
    [floor(i n / k), ceil((i + 1) n / k)); each cell's pixels are gathered (the last repeated up to the longest
    cell) and maxed. Unlike PyTorch's op, `size` may be symbolic (a fraction of the image size)."""
    for axis, k in zip((2, 3), size):
        n = x.shape[axis]
        cells = torch.arange(k)
        start, end = cells * n // k, ((cells + 1) * n + k - 1) // k
        offsets = torch.arange((n + k - 1) // k + 1)  # at least the longest cell
        index = torch.minimum(start[:, None] + offsets, end[:, None] - 1)
        x = x.index_select(axis, index.flatten()).unflatten(axis, tuple(index.shape)).amax(axis + 1)
    return x


class TraceablePooling(TorchFunctionMode):
    """While tracing: `F.adaptive_max_pool2d` (SAFMN's and SMFAN's pooled 1/8 maps) as `adaptive_max_pool_cells`.
    PyTorch's op takes its output size as plain integers, which would fix the image size of the exported graph."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.adaptive_max_pool2d and not kwargs.get("return_indices", False) and len(args) <= 2:
            x, size = args[0], args[1] if len(args) > 1 else kwargs["output_size"]
            size = (size, size) if not isinstance(size, (tuple, list)) else size
            return adaptive_max_pool_cells(x, [x.shape[2 + i] if s is None else s for i, s in enumerate(size)])
        return func(*args, **kwargs)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter's warnings and log lines (deprecations, its progress) are not the user's business."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def trace_onnx(wrapper: nn.Module, name: str):
    """The ONNX model (onnx.ModelProto) of `wrapper` with dynamic batch, height and width.

    The tracer treats every size as possibly 1 and would fix the sizes where an op behaves differently for 1 (a
    contiguity test, a conv backend): sizes are taken as not 1 (`backed_size_oblivious`) and what it still cannot
    prove becomes a runtime check of the traced program, which ONNX drops; the runtime check below (every input
    size class: no pad, reflect, replicate, 1 pixel) is what shows the graph right."""
    from torch.fx.experimental import _config as shapes_config

    dim = torch.export.Dim
    shapes = {"x": {0: dim("batch", min=1, max=1024), 2: dim("height", min=1, max=MAX_SIDE),
                    3: dim("width", min=1, max=MAX_SIDE)}}
    try:
        with torch.no_grad(), quiet_exporter(), TraceablePooling(), shapes_config.patch(backed_size_oblivious=True):
            program = torch.export.export(wrapper, (torch.rand(2, 3, 37, 45),), dynamic_shapes=shapes, strict=False,
                                          prefer_deferred_runtime_asserts_over_guards=True)
            proto = torch.onnx.export(program, opset_version=OPSET, input_names=["input"], output_names=["output"],
                                      verbose=False).model_proto
    except Exception as e:  # the exporter's errors are many and long: one line
        raise EsrError(f"{name}: cannot export to ONNX ({type(e).__name__}: {first_line(e)[:300]})") from None
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if any(not dims[i].dim_param for i in (0, 2, 3)):
        raise EsrError(f"{name}: cannot export to ONNX with a dynamic size (the tracer fixed it to "
                       f"{[d.dim_value or d.dim_param for d in dims]})")
    rename_dims(proto, {dims[0].dim_param: "batch", dims[2].dim_param: "height", dims[3].dim_param: "width"})
    return proto


def rename_dims(proto, names: Mapping[str, str]) -> None:
    """The tracer's symbols (s77, 4*s53) as words (batch, 4*height) wherever a shape names them."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = pattern.sub(lambda m: names[m.group(1)], d.dim_param)


def to_onnx(model: LoadedModel, source: str = "", fp16: bool = False,
            image: torch.Tensor | None = None) -> tuple[bytes, Agreement]:
    """The checked ONNX file of `model` (bytes) and what the check saw; EsrError when it cannot be exported or
    onnxruntime disagrees with PyTorch."""
    import onnx
    import onnxruntime as ort

    from . import __version__

    proto = trace_onnx(Deployable(model, fp16).eval(), model.name)
    onnx.helper.set_model_props(proto, {
        "esr_version": __version__, "architecture": model.architecture.name, "scale": str(model.scale),
        "source": source, "weights": model.weights.name if model.weights else "",
        "input": "RGB float32 in [0, 1], (N, 3, H, W), any N, H and W",
        "output": "RGB float32 in [0, 1], (N, 3, scale*H, scale*W)",
        "precision": "fp16 inside, fp32 in and out" if fp16 else "fp32"})
    data = proto.SerializeToString()
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EsrError(f"{model.name}: onnxruntime cannot load the exported graph: {first_line(e)[:300]}") from None

    def run(x: torch.Tensor) -> torch.Tensor:
        [y] = session.run(None, {"input": x.numpy()})
        return torch.from_numpy(y)

    inputs = check_inputs([(2, 24, 32), (1, 21, 19), (1, 12, 13), (1, 5, 7), (1, 1, 1)], image)
    return data, check(model, run, inputs, FP16_TOLERANCE if fp16 else TOLERANCE, "onnxruntime", exact=not fp16)


def check_inputs(shapes: list[tuple[int, int, int]], image: torch.Tensor | None) -> list[torch.Tensor]:
    """Image-like random (batch, 3, h, w) inputs in [0, 1] (seeded: noise at a quarter of the size, stretched
    bilinearly), and the image. Not pixel-level white noise: there trained networks leave the range they were
    trained for and float32 rounding runs wild (DSCF's SPAN: esr's fp32 5.6e-4 from float64, ncnn 3.3e-2, half a
    level on the Set5 images for neither), so the check would judge the arithmetic, not the graph."""
    generator = torch.Generator().manual_seed(0)
    inputs = [F.interpolate(torch.rand(n, 3, -(-h // 4), -(-w // 4), generator=generator), size=(h, w),
                            mode="bilinear", align_corners=False) for n, h, w in shapes]
    return inputs + ([image] if image is not None else [])


@dataclass(frozen=True)
class Agreement:
    """What the check saw: the largest |runtime - esr's fp32| (0-1 scale), and, where that was above the
    tolerance, the largest difference of esr's own fp32 from float64 (`rounding`) that excused it."""

    max_error: float
    rounding: float | None = None


def check(model: LoadedModel, run: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor],
          tolerance: float, runtime: str, exact: bool = True) -> Agreement:
    """`run` (another runtime) against esr's fp32 engine on every input, or EsrError.

    A difference above `tolerance` passes only where it is float32's own rounding, not the graph: with `exact`,
    the runtime must then be within twice esr's own fp32 distance from a float64 run of the same network (where
    esr's fp32 alone is further than the tolerance from float64, no other fp32 runtime can be within it of esr)."""
    from .engine import Upscaler

    reference = Upscaler(LoadedModel(copy.deepcopy(model.module), model.architecture, model.config,
                                     weights=model.weights, precision="fp32"), tile=0)
    worst, rounding = 0.0, None
    for x in inputs:
        expected = reference.upscale(x)
        try:
            got = run(x)
        except EsrError:
            raise
        except Exception as e:
            raise EsrError(f"{model.name}: {runtime} failed on a {tuple(x.shape)} input: {first_line(e)[:300]}") \
                from None
        if got.shape != expected.shape:
            raise EsrError(f"{model.name}: {runtime} gives {tuple(got.shape)} for {tuple(x.shape)}, "
                           f"esr {tuple(expected.shape)}; no file written")
        error = float((got - expected).abs().max())
        if not error <= tolerance:
            own = None
            if exact and error == error:  # not nan
                with torch.no_grad():
                    truth = Deployable(model).double().eval()(x.double())
                own = float((expected - truth).abs().max())
                if float((got - truth).abs().max()) <= 2 * own:
                    rounding = max(rounding or 0.0, own)
                    worst = max(worst, error)
                    continue
            why = f"; esr's own fp32 is {own:.2g} from float64 here" if own is not None else ""
            raise EsrError(f"{model.name}: {runtime} differs from PyTorch by {error:.3g} on a {tuple(x.shape)} input "
                           f"(tolerance {tolerance:g}{why}); no file written")
        worst = max(worst, error)
    return Agreement(worst, rounding)
