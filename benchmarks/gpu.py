"""The GPU path, measured in one run (< 8 minutes on one data-centre GPU); prints one table per question.

For rlfn-x4, span-ntire24-x4, imdn-rtc-x2, mdrn-x4 and gfmn-x4 on CUDA:
1. Set5 Y-PSNR in fp16 against fp32 (the cost must be <= 0.05 dB where the plugin declares fp16);
2. tiled == untiled in fp16 (largest difference in 8-bit levels, share of pixels that differ);
3. `esr benchmark`'s 256x256 runtime next to the NTIRE published runtime and its GPU; the network alone in fp32,
   fp16 autocast over fp32 weights (esr before) and fp16 weights (esr now);
4. 4K output images/s (1920x1080 in at x2, 960x540 at x4) of `esr upscale`'s batch path against a plain fp32
   PyTorch loop (whole image, no_grad, host copy of the float output), with peak GPU memory; with `--compile` for
   two of them;
5. `esr video` frames/s on a short clip against the engine alone on the same frames.

    python benchmarks/gpu.py [--weights-dir ../shared/zoo/weights] [--models rlfn_paper_x4.pth,...] [--seconds 2]

Weights are files of --weights-dir (recognised as their zoo entries by sha256); Set5 from ESR_DATA or
../shared/datasets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from esr_cli.benchmarking import measure
from esr_cli.evaluation import evaluate
from esr_cli.ffmpeg import ffmpeg_exe
from esr_cli.images import quantize
from esr_cli.models import load_model
from esr_cli.upscaling import plan, upscale_files
from esr_cli.video import upscale_video

sys.path.insert(0, str(Path(__file__).parent))
import lowprec  # noqa: E402  (benchmarks/lowprec.py)

DEVICE = "cuda"
"""--device cpu runs the same code small, to check the script without a GPU (its figures mean nothing)."""
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = "rlfn_paper_x4.pth,span_ntire24_x4.pth,imdn_rtc_x2.pth,mdrn_paper_x4.pth,gfmn_ntire23_x4.pth"
"""The zoo files of rlfn-x4, span-ntire24-x4, imdn-rtc-x2, mdrn-x4 and gfmn-x4 (known by their sha256)."""
COMPILED = ("span_ntire24_x4", "rlfn_paper_x4")
"""Also timed with `--compile` (its compilation is paid by the warm-up image, not counted)."""


def sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def set5(name: str, precision: str) -> float:
    return evaluate([name], ["Set5"], device=DEVICE, precision=precision)[0].psnr


def tiled_vs_untiled(name: str) -> tuple[int, float]:
    """fp16, a 480x360 input: tiles of 128 against the whole image."""
    x = torch.rand(1, 3, 360, 480, generator=torch.Generator().manual_seed(0))
    whole = load_model(name, device=DEVICE, precision="fp16", tile=0).upscale_levels(x).astype(int)
    tiled = load_model(name, device=DEVICE, precision="fp16", tile=128).upscale_levels(x).astype(int)
    diff = np.abs(whole - tiled)
    return int(diff.max()), float((diff > 0).mean() * 100)


def images(folder: Path, scale: int, count: int) -> list[Path]:
    """`count` random inputs whose output is 4K (the networks run the same work on any content)."""
    from PIL import Image

    w, h = 3840 // scale, 2160 // scale
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"{scale}_{i}.png"
        if not p.exists():
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p, compress_level=1)
        paths.append(p)
    return paths


def plain_loop(name: str, files: list[Path]) -> float:
    """Images/s of the loop a user writes: fp32 weights, whole image, float output copied to the host, PNG saved."""
    from PIL import Image

    up = load_model(name, device=DEVICE, precision="fp32", tile=0)
    net, r = up.model.module, up.model.architecture.input_range
    sync()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for f in files:
            x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
            with torch.no_grad():
                y = (net(x.to(DEVICE) * r) / r).clamp(0, 1).cpu()
            Image.fromarray(quantize(y, 8)[0]).save(Path(out) / f.name, compress_level=1)
    return len(files) / (time.perf_counter() - start)


def esr_batch(name: str, files: list[Path], compile_: bool = False) -> tuple[float, float, str]:
    """Images/s of `esr upscale`'s batch path (auto precision, auto tile; `--compile`), peak GPU GB, precision."""
    up = load_model(name, device=DEVICE, precision="auto", tile="auto")
    if compile_:
        up.compile()  # the warm-up image below pays the compilation
    if DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        upscale_files(plan(files[:1], Path(out) / "warm", up.scale), up, quiet=True)
        s = upscale_files(plan(files, out, up.scale), up, quiet=True, existing="overwrite")
    peak = torch.cuda.max_memory_allocated() / 1e9 if DEVICE.startswith("cuda") else float("nan")
    return len(files) / s.seconds, peak, up.model.precision


def video_fps(name: str, folder: Path, seconds: float) -> tuple[float, float]:
    """(esr video frames/s, engine-alone frames/s) on a testsrc2 clip whose output is 4K."""
    up = load_model(name, device=DEVICE, precision="auto", tile="auto")
    size = f"{3840 // up.scale}x{2160 // up.scale}"
    clip = folder / f"clip_{size}.mp4"
    if not clip.exists():
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=25:duration={seconds}", "-pix_fmt", "yuv420p", str(clip)],
                       check=True)
    out = folder / f"out_{Path(name).stem}.mp4"
    summary = upscale_video(clip, out, up, overwrite=True, quiet=True)
    frames = summary.frames
    h, w = 2160 // up.scale, 3840 // up.scale
    x = torch.rand(up.batch_size, 3, h, w, device=DEVICE)
    up.upscale(x)
    sync()
    start = time.perf_counter()
    for _ in range(-(-frames // up.batch_size)):
        up.upscale_levels(x)
    sync()
    return summary.fps, frames / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", type=Path, default=SHARED / "zoo/weights")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a check of the script)")
    opts = ap.parse_args()
    global DEVICE
    DEVICE = opts.device
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU (or --device cpu to check the script)")
    os.environ.setdefault("ESR_DATA", str(SHARED / "datasets"))
    names = [str(opts.weights_dir / f) for f in opts.models.split(",")]
    gpu = torch.cuda.get_device_name() if DEVICE.startswith("cuda") else "CPU (script check only)"
    print(f"{gpu}, torch {torch.__version__}")

    rows = []
    for n in names:
        fp32, fp16 = set5(n, "fp32"), set5(n, "fp16")
        declared = "fp16" in load_model(n, device=DEVICE).model.architecture.precisions
        level, share = tiled_vs_untiled(n)
        rows.append([Path(n).stem, f"{fp32:.4f}", f"{fp16:.4f}", f"{fp16 - fp32:+.4f}", "yes" if declared else "no",
                     "ok" if not declared or fp32 - fp16 <= 0.05 else "FIX", str(level), f"{share:.3f}%"])
    print("\n" + grid(["model", "Set5 fp32", "fp16", "cost", "declared", "<=0.05", "tile max lv", "px differ"], rows))

    rows = []
    for n in names:
        up = load_model(n, device=DEVICE, precision="fp16")
        row = measure(up, 256)
        ch = up.model.weights.challenge if up.model.weights else None
        rows.append([Path(n).stem, f"{row.runtime_ms:.2f}", f"{ch.runtime_ms:.2f}" if ch and ch.runtime_ms else "-",
                     ch.gpu if ch else "-", f"{row.memory_mb:.0f}" if row.memory_mb else "-"])
    print("\n" + grid(["model", "esr ms (fp16)", "NTIRE ms", "NTIRE GPU", "peak MB"], rows))

    rows = []
    for n in names:  # the network alone, 256x256: fp16 weights (esr now) against autocast (esr before)
        runs = lowprec.runners(Path(n), DEVICE, "fp16")
        ms = lowprec.interleaved(runs, 20)
        rows.append([Path(n).stem, *(f"{v:.2f}" for v in ms.values()), f"{ms['fp16 weights'] / ms['fp16 autocast']:.2f}"])
    print("\n" + grid(["model", *runs, "weights/autocast"], rows))

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in names:
            scale = load_model(n, device="cpu").scale
            files = images(Path(tmp) / "in", scale, opts.images)
            plain = plain_loop(n, files)
            ours, peak, precision = esr_batch(n, files)
            compiled = f"{esr_batch(n, files, compile_=True)[0]:.2f}" if Path(n).stem in COMPILED else "-"
            rows.append([Path(n).stem, f"{plain:.2f}", f"{ours:.2f}", f"{ours / plain:.2f}x", precision, f"{peak:.2f}",
                         compiled])
        print("\n" + grid(["model", "plain img/s", "esr img/s", "ratio", "esr precision", "peak GB",
                           "--compile img/s"], rows))

        rows = []
        for n in names:
            full, alone = video_fps(n, Path(tmp), opts.seconds)
            rows.append([Path(n).stem, f"{full:.1f}", f"{alone:.1f}", f"{full / alone:.2f}"])
        print("\n" + grid(["model", "esr video fps", "engine fps", "share"], rows))


if __name__ == "__main__":
    main()
