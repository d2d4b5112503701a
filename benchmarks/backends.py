"""CPU time per 256x256 forward: esr's own engine (auto precision: bf16 where the CPU has it and the plugin declares
it) against onnxruntime (fp32) and ncnn (fp32) on the graphs `esr export` writes and checks; interleaved rounds,
medians, one table. Decides whether another runtime earns a `--backend` option (>= 1.2x faster at <= 0.05 dB).

    python benchmarks/backends.py [--weights rlfn_paper_x4.pth,...] [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from esr_cli.errors import EsrError, first_line
from esr_cli.export import to_onnx
from esr_cli.export_ncnn import ncnn_runner, to_ncnn
from esr_cli.models import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = "rlfn_paper_x4.pth,imdn_paper_x4.pth,safmn_ntire23_x4.pth,span_ntire24_x4.pth"


def runners(weights: Path, x: torch.Tensor, folder: Path) -> dict[str, object]:
    """name -> a no-argument call doing one forward of `x`, or the reason it cannot run."""
    import onnxruntime as ort

    esr = load_model(weights, device="cpu", precision="auto", tile=0)
    out: dict[str, object] = {f"esr {esr.model.precision}": lambda: esr.upscale(x)}
    plain = load_model(weights, device="cpu", precision="fp32", tile=0)
    try:
        data, _ = to_onnx(plain.model)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        out["onnxruntime fp32"] = lambda: session.run(None, feed)
    except EsrError as e:
        out["onnxruntime fp32"] = first_line(e)
    try:
        param, bin_, _ = to_ncnn(plain.model)
        (folder / "m.param").write_bytes(param)
        (folder / "m.bin").write_bytes(bin_)
        run = ncnn_runner(folder / "m.param", folder / "m.bin", plain.name, fp16=False)
        out["ncnn fp32"] = lambda: run(x)
    except EsrError as e:
        out["ncnn fp32"] = first_line(e)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    rows, refused = [], []
    for file in opts.weights.split(","):
        weights = Path(file) if Path(file).is_file() else SHARED / "zoo/weights" / file
        with tempfile.TemporaryDirectory() as tmp:
            calls = runners(weights, x, Path(tmp))
            live = {k: v for k, v in calls.items() if callable(v)}
            for call in live.values():  # warm-up
                call()
            times: dict[str, list[float]] = {k: [] for k in live}
            for r in range(opts.rounds):  # interleaved, the order turned every round
                for name in list(live)[:: 1 if r % 2 == 0 else -1]:
                    start = time.perf_counter()
                    live[name]()
                    times[name].append((time.perf_counter() - start) * 1000)
        cells = {k: f"{statistics.median(v):.0f}" for k, v in times.items()}
        cells.update({k: "-" for k, v in calls.items() if not callable(v)})
        rows.append((weights.stem, cells))
        refused += [f"  {weights.stem}, {k}: {v}" for k, v in calls.items() if not callable(v)]
    names = list(dict.fromkeys(n for _, cells in rows for n in cells))
    print(f"256x256 -> CPU ms per forward, median of {opts.rounds} interleaved rounds, {opts.threads} threads")
    print(f"{'model':<22}" + "".join(f"{n:>18}" for n in names))
    for model, cells in rows:
        print(f"{model:<22}" + "".join(f"{cells.get(n, '-'):>18}" for n in names))
    print("\n".join(["not run:", *refused]) if refused else "")


if __name__ == "__main__":
    main()
