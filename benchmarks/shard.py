"""Sharded `esr upscale` on one machine: 2 ranks x 1 thread (torchrun-style, gloo) against 1 rank x 2 threads (and
1 x 1 for reference), on the same images and weights, in interleaved rounds; the ratio of wall times and the balance
of pixels per rank.

On a 2-core machine both use the same cores, so they should be near equal: the ratio shows what sharding costs
(process start, model load twice, the gather) against what it gains (no thread contention inside one forward).

    python benchmarks/shard.py [--weights rlfn_paper_x4.pth] [--images 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from esr_cli.sharding import balance
from esr_cli.images import header_pixels

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], ranks: int, threads: int) -> float:
    """Wall seconds of `esr upscale` as `ranks` processes of `threads` threads each (checked for success)."""
    port, start = free_port(), time.perf_counter()
    procs = []
    for rank in range(ranks):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if ranks > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "esr_cli", *args, "--threads", str(threads)], env=env,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"esr failed:\n{err}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="rlfn_paper_x4.pth", help="file under ../shared/zoo/weights, or a path")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    opts = ap.parse_args()
    weights = Path(opts.weights) if Path(opts.weights).is_file() else SHARED / "zoo/weights" / opts.weights
    files = sorted((SHARED / "datasets/B100/LR_bicubic_selfexsr/X4").glob("*.png"))[: opts.images]
    if not files:
        sys.exit("no B100 LR images under ../shared/datasets")
    pixels = [header_pixels(f) for f in files]
    owner = balance(pixels, 2)
    loads = [sum(p for p, k in zip(pixels, owner) if k == r) for r in range(2)]
    times: dict[str, list[float]] = {"1 rank x 2 threads": [], "2 ranks x 1 thread": [], "1 rank x 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.rounds):  # interleaved: the host's drift hits both alike
            setups = [("1 rank x 2 threads", 1, 2), ("2 ranks x 1 thread", 2, 1), ("1 rank x 1 thread", 1, 1)]
            for name, ranks, threads in setups if i % 2 == 0 else setups[::-1]:
                out = Path(tmp) / f"{ranks}x{threads}-{i}"
                times[name].append(run(["upscale", *map(str, files), "-m", str(weights), "-o", str(out), "-q",
                                        "--device", "cpu"], ranks, threads))
    base = statistics.median(times["1 rank x 2 threads"])
    print(f"{len(files)} B100 x4 LR images, {weights.name}, {opts.rounds} interleaved rounds (median wall s)")
    print(f"{'setup':<20} {'seconds':>8} {'ratio':>6}")
    for name, values in times.items():
        print(f"{name:<20} {statistics.median(values):8.2f} {statistics.median(values) / base:6.2f}")
    print(f"pixels per rank: {loads[0]} / {loads[1]} (heaviest {max(loads) / (sum(loads) / 2):.3f}x the mean; "
          f"{owner.count(0)} / {owner.count(1)} images)")


if __name__ == "__main__":
    main()
