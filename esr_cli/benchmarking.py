"""Efficiency figures as the NTIRE Efficient-SR challenges report them: parameters, FLOPs, activations, convolutions,
peak memory and runtime of a network on one (1, 3, 256, 256) LR input, with warm-up, spread and honest memory.
What is printed and written from the figures is `reports`."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .engine import Upscaler
from .errors import EsrError, first_line

MIN_RUNS = 3
"""Timed runs kept even when the time budget is spent."""
MAX_RUNS = 1000
"""Timed runs of a model at most, however fast it is."""
DEFAULTS = {"cuda": (10, 50, None), "cpu": (2, None, 6.0)}
"""(warm-up runs, timed runs, time budget in seconds for the timed runs) by device type. Without a number of runs,
a model gets as many as its budget holds."""


@dataclass
class Row:
    """One model's figures; `skipped` holds the reason when it could not be measured."""

    model: str
    arch: str = ""
    scale: int = 0
    size: int = 0
    device: str = ""
    precision: str = ""
    params: int = 0
    buffers: int = 0
    """State-dict elements that are not parameters (the checkpoint holds params + buffers)."""
    macs: int = 0
    """Multiply-accumulates of convolutions and matrix products (FlopCounterMode FLOPs / 2)."""
    activations: int = 0
    """Elements of every nn.Conv2d / ConvTranspose2d output (forward hooks, the NTIRE definition)."""
    convs: int = 0
    """Calls of nn.Conv2d / ConvTranspose2d modules (NTIRE "#Conv")."""
    unhooked_convs: int = 0
    """Convolutions the module hooks do not see (functional F.conv2d), found at the dispatcher."""
    memory_mb: float | None = None
    memory_kind: str = ""
    runtime_ms: float | None = None
    """Median of the timed runs."""
    q1_ms: float | None = None
    q3_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    runs: int = 0
    warmup: int = 0
    throughput_mpx_s: float | None = None
    """Output megapixels per second at the median runtime."""
    psnr: float | None = None
    dataset: str = ""
    reference_psnr: float | None = None
    """The plugin's Set5 Y-PSNR with the authors' code (not measured here)."""
    skipped: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- shape-only figures -----------------------------------------------------------------------

_aten = torch.ops.aten
CONVOLUTIONS = {_aten.conv1d, _aten.conv2d, _aten.conv3d, _aten.conv_transpose1d, _aten.conv_transpose2d,
                _aten.conv_transpose3d, _aten.convolution, _aten._convolution}
"""What a dispatch mode sees of a convolution: only the outermost of these (the others run beneath it)."""


class _ConvCensus(TorchDispatchMode):
    """Counts every convolution call, module or functional."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in CONVOLUTIONS:
            self.calls += 1
        return out


def complexity(module: nn.Module, size: int, input_range: float = 1.0) -> dict[str, int]:
    """params, buffers, macs, activations, convs, unhooked_convs of `module` on a (1, 3, size, size) input.

    Shape-only on a meta-device copy when every op has a meta kernel, else one real forward on its device."""
    weight = next(module.parameters())
    try:
        meta = copy.deepcopy(module).to("meta")
        return _count(meta, torch.zeros(1, 3, size, size, device="meta", dtype=weight.dtype))
    except (NotImplementedError, RuntimeError):
        return _count(module, (torch.rand(1, 3, size, size, device=weight.device) * input_range).to(weight.dtype))


def _count(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    activations, convs = [0], [0]

    def hook(_module, _inputs, output) -> None:
        activations[0] += output.numel()
        convs[0] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        flops, census = FlopCounterMode(display=False), _ConvCensus()
        with torch.inference_mode(), flops, census:
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in module.parameters())
    return dict(params=params, buffers=sum(t.numel() for t in module.state_dict().values()) - params,
                macs=flops.get_total_flops() // 2, activations=activations[0], convs=convs[0],
                unhooked_convs=census.calls - convs[0])


# ---- measured figures ---------------------------------------------------------------------------

def peak_memory(run: Callable[[], object], device: torch.device, resident: int) -> tuple[float, str]:
    """(MiB, what it is) of one call of `run`. `resident`: bytes of its weights and input, added to what the run
    allocates."""
    if device.type == "cuda":  # other models may be loaded: count only what this run adds to `resident`
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        return (resident + peak) / 2**20, "CUDA: weights + input + max_memory_allocated above them in one run (reset)"
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return (resident + peak) / 2**20, "CPU: weights + input + peak of torch allocations in one run (torch.profiler)"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines on file descriptor 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 1 GiB for reuse instead of returning them to the system.

    By default every feature map above its mmap threshold is a fresh mapping: each forward on a CPU page-faults
    all of its activations in again. For GFMN at 256x256 that was 40% of the time (150-200k page faults per
    forward), varying by 30% from run to run; with the memory kept, the same forward is 1.6x faster and makes no
    page faults. Process-wide and once; False where malloc is not glibc's."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(getattr(libc, "mallopt", None) and libc.mallopt(m_mmap_threshold, 1 << 30)
                and libc.mallopt(m_trim_threshold, 1 << 30))


def planned_runs(estimate_ms: float, runs: int | None, budget_s: float | None) -> int:
    """Timed runs for a model whose forward takes about `estimate_ms`: `runs`, as many as fit in `budget_s` when
    that is less (or when `runs` is None), never fewer than MIN_RUNS nor more than MAX_RUNS."""
    fit = MAX_RUNS if budget_s is None else int(budget_s * 1e3 / max(estimate_ms, 1e-3))
    return max(MIN_RUNS, min(runs or MAX_RUNS, fit, MAX_RUNS))


def schedule(counts: Sequence[int]) -> list[list[int]]:
    """Rounds of indices into `counts`: index i comes up counts[i] times, spread evenly over the rounds.

    Timing models in these rounds instead of one after another spreads each model's runs over the whole sweep, so
    every median is taken over the same stretches of the machine: a VM's speed drifts by 20-40% over seconds."""
    rounds = max(counts, default=0)
    return [[i for i, n in enumerate(counts) if (r + 1) * n // rounds > r * n // rounds] for r in range(rounds)]


def time_interleaved(runs: Sequence[Callable[[], object]], counts: Sequence[int],
                     device: torch.device) -> list[list[float]]:
    """Milliseconds of counts[i] timed calls of runs[i], interleaved by `schedule` (CUDA events on GPU,
    perf_counter elsewhere). The callers have warmed every run up."""
    times: list[list[float]] = [[] for _ in runs]
    for round_ in schedule(counts):
        for i in round_:
            times[i].append(_time_one(runs[i], device))
    return times


def _time_one(run: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        run()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)
    t0 = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def spread(times: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max (ms)."""
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return dict(runtime_ms=median, q1_ms=q1, q3_ms=q3, min_ms=min(times), max_ms=max(times))


# ---- one model, many models --------------------------------------------------------------------

@dataclass
class Prepared:
    """A loaded model with its shape figures and memory measured, warmed up, and the timed runs it is due."""

    row: Row
    run: Callable[[], None]
    runs: int
    estimate_ms: float
    """The last warm-up run's time."""


def prepare(upscaler: Upscaler, size: int = 256, warmup: int | None = None, runs: int | None = None,
            budget_s: float | None = None) -> Prepared:
    """Every figure but runtime of one loaded model on a (1, 3, size, size) input; the first warm-up run measures
    memory, the last one how many timed runs fit in the budget (see DEFAULTS)."""
    model = upscaler.model
    arch, device = model.architecture, model.device
    if size % arch.size_multiple:
        raise EsrError(f"{arch.name} needs input sides that are multiples of {arch.size_multiple}; --size {size}")
    default_warmup, default_runs, default_budget = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    warmup = max(default_warmup if warmup is None else warmup, 1)
    runs, budget_s = runs or default_runs, budget_s if budget_s is not None else default_budget
    if device.type == "cpu":
        keep_freed_memory()  # no page faults in the timed forwards (not in the engine: it raises peak memory)
    module = model.module
    row = Row(model.name, arch.name, model.scale, size, str(device), model.precision, warmup=warmup,
              reference_psnr=model.weights.reference_psnr if model.weights else None)
    for key, value in complexity(module, size, arch.input_range).items():
        setattr(row, key, value)
    x = model.network_input(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)))

    def run() -> None:  # the network alone, fed as every run feeds it (no clamp, no fallback check)
        with model.running():
            module(x)

    resident = sum(t.numel() * t.element_size() for t in module.state_dict().values()) + x.numel() * 4
    start = time.perf_counter()
    row.memory_mb, row.memory_kind = peak_memory(run, device, resident)
    estimate = (time.perf_counter() - start) * 1e3
    for _ in range(warmup - 1):
        estimate = _time_one(run, device)
    return Prepared(row, run, planned_runs(estimate, runs, budget_s), estimate)


def finish(row: Row, times: Sequence[float]) -> Row:
    """`row` with the runtime figures of its timed runs."""
    for key, value in spread(times).items():
        setattr(row, key, value)
    row.runs = len(times)
    row.throughput_mpx_s = (row.size * row.scale) ** 2 / (row.runtime_ms * 1e3)
    return row


def measure(upscaler: Upscaler, size: int = 256, warmup: int | None = None, runs: int | None = None,
            budget_s: float | None = None) -> Row:
    """Every figure of one loaded model on a (1, 3, size, size) input."""
    ready = prepare(upscaler, size, warmup, runs, budget_s)
    return finish(ready.row, time_interleaved([ready.run], [ready.runs], upscaler.model.device)[0])


def benchmark(models: Iterable[str], size: int = 256, device: str = "auto", precision: str = "fp32",
              warmup: int | None = None, runs: int | None = None, budget_s: float | None = None,
              dataset: str | Path | None = None, scale: int | None = None, arch: str | None = None,
              progress: Callable[[str], None] | None = None) -> list[Row]:
    """Rows sorted by runtime (skipped models last, with their reason). Models are zoo names or weights files.

    Every model is loaded and measured first; then all are timed together, in interleaved rounds (`schedule`)."""
    from .models import load_model

    ready, rows = [], []
    for ref in models:
        if progress:
            progress(f"measuring {ref} ...")
        try:
            upscaler = load_model(ref, scale=scale, device=device, precision=precision, quiet=True, arch=arch)
            prepared = prepare(upscaler, size, warmup, runs, budget_s)
            if dataset is not None:
                from .evaluation import evaluate

                result = evaluate([upscaler], [dataset])[0]
                prepared.row.psnr, prepared.row.dataset = result.psnr, result.dataset
            ready.append(prepared)
        except (EsrError, OSError, RuntimeError) as e:  # one failing model never ends a sweep
            message = first_line(e)
            rows.append(Row(str(ref), skipped=message if isinstance(e, EsrError) else f"{type(e).__name__}: {message}"))
            gc.collect()  # what the failed model held (measured models stay loaded until the timing)
    if ready:
        if progress:
            seconds = sum(p.runs * p.estimate_ms for p in ready) / 1e3
            progress(f"timing {len(ready)} models in interleaved rounds (about {seconds:.0f} s) ...")
        times = time_interleaved([p.run for p in ready], [p.runs for p in ready], torch.device(ready[0].row.device))
        rows += [finish(p.row, t) for p, t in zip(ready, times)]
    return sort_rows(rows)


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r.runtime_ms is None, r.runtime_ms or 0.0, r.model))


def all_models(registry=None) -> list[str]:
    """Every pretrained weights name of the installed plugins."""
    from .registry import default_registry

    return [w.name for w in (registry or default_registry()).weights()]
