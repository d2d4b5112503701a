"""Time per 256x256 forward of the network alone: fp32, autocast over fp32 weights (how esr ran low precision
before), and the weights converted (how it runs now); interleaved rounds, medians, one table.

    python benchmarks/lowprec.py [--device cpu|cuda] [--precision bf16|fp16] [--weights rlfn_paper_x4.pth,...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from esr_cli.loaded import DTYPES
from esr_cli.models import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = "rlfn_paper_x4.pth,span_ntire24_x4.pth,imdn_rtc_x2.pth,mdrn_paper_x4.pth,gfmn_ntire23_x4.pth"


def runners(weights: Path, device: str, precision: str) -> dict[str, object]:
    """name -> a no-argument call doing one forward (synchronised on CUDA)."""
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fp32 = load_model(weights, device=device, precision="fp32", tile=0).model
    low = load_model(weights, device=device, precision=precision, tile=0).model
    x32, xlow = fp32.network_input(x), low.network_input(x)

    def plain():
        with fp32.running():
            fp32.module(x32)
        sync()

    def autocast():
        with torch.inference_mode(), torch.autocast(fp32.device.type, dtype=DTYPES[precision]):
            fp32.module(x32)
        sync()

    def converted():
        with low.running():
            low.module(xlow)
        sync()

    return {"fp32": plain, f"{precision} autocast": autocast, f"{precision} weights": converted}


def interleaved(runs: dict[str, object], rounds: int) -> dict[str, float]:
    """Median ms of each run over `rounds` rounds that run each once, after one warm-up each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            start = time.perf_counter()
            run()
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--rounds", type=int, default=15)
    opts = ap.parse_args()
    header = ["fp32", f"{opts.precision} autocast", f"{opts.precision} weights"]
    print(f"ms per 256x256 forward, {opts.device}, {torch.get_num_threads()} threads, median of {opts.rounds} "
          "interleaved rounds")
    print(f"{'weights':24}" + "".join(f"{h:>16}" for h in header) + f"{'weights/autocast':>18}")
    for name in opts.weights.split(","):
        runs = runners(SHARED / "zoo/weights" / name, opts.device, opts.precision)
        ms = interleaved(runs, opts.rounds)
        print(f"{name:24}" + "".join(f"{ms[h]:16.1f}" for h in header) + f"{ms[header[2]] / ms[header[1]]:18.2f}",
              flush=True)


if __name__ == "__main__":
    main()
