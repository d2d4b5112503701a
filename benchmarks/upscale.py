"""`esr upscale` against a plain PyTorch loop on the same images and weights: output Mpx/s, ratio, Set5 PSNR cost.

The plain loop is what a user writes by hand: load each image, run the whole image in fp32 (no_grad), save a PNG.
esr runs the batch path (`upscale_files`: read-ahead, write-behind, channels_last, auto precision, auto tile).

    python benchmarks/upscale.py [--weights rlfn_paper_x4.pth,rlfn_s_x2.pth,...] [--images 3] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from esr_cli.images import quantize, read_image, to_batch
from esr_cli.metrics import psnr
from esr_cli.models import load_model
from esr_cli.upscaling import plan, upscale_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = "rlfn_paper_x4.pth,rlfn_s_x2.pth,mdrn_paper_x4.pth,imdn_paper_x4.pth"


def plain_loop(weights: Path, files: list[Path], out: Path) -> float:
    """Seconds for load -> whole image fp32 -> save, one image at a time."""
    up = load_model(weights, device="cpu", precision="fp32")
    net, r = up.model.module.to(memory_format=torch.contiguous_format), up.model.architecture.input_range
    start = time.perf_counter()
    for f in files:
        x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            y = (net(x * r) / r).clamp(0, 1)
        Image.fromarray(quantize(y, 8)[0]).save(out / f"{f.stem}.png")
    return time.perf_counter() - start


def esr_batch(weights: Path, files: list[Path], out: Path, precision: str, compile_: bool) -> tuple[float, str]:
    """Seconds for the batch path, and the precision it ran in."""
    up = load_model(weights, device="cpu", precision=precision, tile="auto")
    if compile_:
        up.compile()
        upscale_files(plan(files[:1], out / "warm", up.scale), up, quiet=True)  # compilation is not throughput
    summary = upscale_files(plan(files, out, up.scale), up, quiet=True, existing="overwrite")
    return summary.seconds, up.model.precision


def set5_psnr(weights: Path, precision: str) -> float:
    """Mean Set5 Y-PSNR through the engine (official LR, HR cropped, `scale` pixels shaved)."""
    up = load_model(weights, device="cpu", precision=precision)
    s, values = up.scale, []
    for hr_file in sorted((SHARED / "datasets/Set5/HR").glob("*.png")):
        lr = read_image(SHARED / f"datasets/Set5/LR_bicubic/X{s}/{hr_file.stem}x{s}.png")
        sr = quantize(up.upscale(to_batch(lr)), 8)[0]
        hr = np.asarray(Image.open(hr_file).convert("RGB"))[: sr.shape[0], : sr.shape[1]]
        values.append(psnr(sr, hr, border=s))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=WEIGHTS, help="files under ../shared/zoo/weights, comma-separated")
    parser.add_argument("--images", type=int, default=3, help="how many B100 HR images to upscale")
    parser.add_argument("--precision", default="auto", help="esr's precision (default auto)")
    parser.add_argument("--compile", action="store_true", help="also time esr with torch.compile")
    args = parser.parse_args()
    files = sorted((SHARED / "datasets/B100/HR").glob("*.png"))[: args.images]
    mpx = sum(np.prod(Image.open(f).size) for f in files) / 1e6
    print(f"{len(files)} B100 images ({mpx:.2f} input Mpx), {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("weights | scale | plain fp32 Mpx/s | esr Mpx/s (precision) | ratio | Set5 fp32 | Set5 esr | cost dB")
    for name in args.weights.split(","):
        weights = SHARED / "zoo/weights" / name
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            scale = load_model(weights, device="cpu").scale
            out_mpx = mpx * scale**2
            plain = plain_loop(weights, files, out)
            fast, precision = esr_batch(weights, files, out / "esr", args.precision, False)
            rows = [(precision, fast)]
            if args.compile:
                rows.append((precision + "+compile", esr_batch(weights, files, out / "c", args.precision, True)[0]))
        ref, ours = set5_psnr(weights, "fp32"), set5_psnr(weights, precision)
        for label, seconds in rows:
            print(f"{name} | x{scale} | {out_mpx / plain:.3f} | {out_mpx / seconds:.3f} ({label}) | "
                  f"{plain / seconds:.2f}x | {ref:.4f} | {ours:.4f} | {ref - ours:+.4f}", flush=True)


if __name__ == "__main__":
    main()
