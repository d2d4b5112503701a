"""Frames/s of `esr video` against the engine alone on the same frames held in memory: the I/O overhead.

    python benchmarks/video.py [--model PATH_OR_NAME] [--size 160x90] [--seconds 2] [--precision fp32]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from esr_cli.images import quantize
from esr_cli.models import load_model
from esr_cli.ffmpeg import Decoder, ffmpeg_exe, probe
from esr_cli.video import upscale_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def make_clip(path: Path, size: str, seconds: float) -> Path:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path


def engine_alone(upscaler, clip: Path) -> tuple[int, float]:
    """Decode everything first, then time only network + quantization over batches."""
    info = probe(clip)
    decoder = Decoder(clip, info)
    frames = np.stack([a for _, a in decoder.frames()])
    start = time.perf_counter()
    for i in range(0, len(frames), upscaler.batch_size):
        x = torch.from_numpy(frames[i:i + upscaler.batch_size].astype(np.float32) / 255).permute(0, 3, 1, 2)
        quantize(upscaler.upscale(x), 8)
    return len(frames), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "zoo" / "weights" / "rlfn_s_x2.pth"))
    parser.add_argument("--size", default="160x90")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()
    upscaler = load_model(args.model, device="cpu", precision=args.precision, batch_size=args.batch_size, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.size, args.seconds)
        engine_alone(upscaler, clip)  # warm-up
        n, t_engine = engine_alone(upscaler, clip)
        from esr_cli.video import Encoding

        summary = upscale_video(clip, Path(tmp) / "out.mp4", upscaler, Encoding(preset=args.preset), quiet=True)
    fps_engine, fps_video = n / t_engine, summary.frames / summary.seconds
    print(f"{upscaler.name} x{upscaler.scale} {args.precision} on CPU ({torch.get_num_threads()} threads), "
          f"{args.size} -> x{upscaler.scale}, {n} frames, encoder libx264 {args.preset}")
    print(f"| {'path':<32} | {'frames/s':>8} | {'seconds':>7} |")
    print(f"| {'-' * 32} | {'-' * 8} | {'-' * 7} |")
    print(f"| {'engine alone (frames in memory)':<32} | {fps_engine:8.2f} | {t_engine:7.2f} |")
    print(f"| {'esr video (decode+encode+mux)':<32} | {fps_video:8.2f} | {summary.seconds:7.2f} |")
    print(f"I/O overhead: {100 * (fps_engine / fps_video - 1):.1f}% (target < 15%)")


if __name__ == "__main__":
    main()
