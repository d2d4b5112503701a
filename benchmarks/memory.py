"""Peak resident memory of `esr upscale` on a large image against the size of its 8-bit output.

Acceptance: a 4000x3000 RGB input upscaled x4 on CPU with --tile auto stays below 3x the output (576 MB -> 1.73 GB).
The input is a B100 photo resized to the requested size (realistic content, so PNG sizes are realistic too).

    python benchmarks/memory.py [--size 4000x3000] [--weights rlfn_ntire22_x4.pth] [--format png]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--weights", default="rlfn_ntire22_x4.pth", help="a file under ../shared/zoo/weights")
    parser.add_argument("--format", default="png")
    parser.add_argument("--extra", default="", help="more `esr upscale` options, space-separated")
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"big.{args.format}"
        photo = next(iter(sorted((SHARED / "datasets/B100/HR").glob("*.png"))))
        Image.open(photo).convert("RGB").resize((w, h), Image.BICUBIC).save(source)
        command = [sys.executable, "-m", "esr_cli", "upscale", str(source), "-o", str(Path(tmp) / "out"),
                   "--model", str(SHARED / "zoo/weights" / args.weights), "--tile", "auto", "-q", *args.extra.split()]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
        out = next((Path(tmp) / "out").iterdir(), None)
        if done.returncode or out is None:
            sys.exit(f"esr upscale failed:\n{done.stderr}")
        Image.MAX_IMAGE_PIXELS = None  # our own output
        ow, oh = Image.open(out).size
        output_bytes = ow * oh * 3
        print(f"{args.weights} {w}x{h} -> {ow}x{oh} ({args.format}, {seconds:.0f} s): peak RSS {peak / 1e9:.2f} GB "
              f"= {peak / output_bytes:.2f}x the 8-bit output ({output_bytes / 1e6:.0f} MB); limit 3x "
              f"{'met' if peak < 3 * output_bytes else 'MISSED'}")
        print(done.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
