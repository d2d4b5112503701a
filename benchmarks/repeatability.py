"""Does `esr benchmark` repeat? Runs the same command several times and compares each model's median runtime.

Acceptance (#7): two runs of the command give medians within 10% on an idle machine. A VM's guest can be idle while
its host is not: before each sweep the script measures the memory bandwidth (a 256 MiB copy), which moves when
neighbours load the host's memory bus. The "machine factor" of a sweep is the geometric mean of its medians over
the first sweep's; "relative" compares the medians with that factor taken out, i.e. how the models rank and compare
within a sweep.

    python benchmarks/repeatability.py [--sweeps 2] [-- esr benchmark options, default: --all --device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def copy_bandwidth(seconds: float = 3.0) -> float:
    """GB/s read + written by copying 256 MiB, median over `seconds`."""
    import torch

    source = torch.rand(64 * 2**20)
    target = torch.empty_like(source)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - t0)
    return 2 * source.numel() * 4 / statistics.median(times) / 1e9


def sweep(options: list[str], json_file: Path) -> dict[str, float]:
    """Median runtime [ms] by model of one `esr benchmark` command."""
    command = [sys.executable, "-m", "esr_cli", "benchmark", *options, "--json", str(json_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    models = json.loads(json_file.read_text())["models"]
    return {m["model"]: m["runtime_ms"] for m in models if not m["skipped"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("options", nargs="*", default=["--all", "--device", "cpu"])
    args = parser.parse_args()
    medians, bandwidths, walls = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.sweeps):
            bandwidths.append(copy_bandwidth())
            start = time.perf_counter()
            medians.append(sweep(args.options, Path(tmp) / f"sweep{i}.json"))
            walls.append(time.perf_counter() - start)
    names = sorted(set.intersection(*(set(m) for m in medians)), key=lambda n: medians[0][n])
    factors = [math.exp(statistics.fmean(math.log(m[n] / medians[0][n]) for n in names)) for m in medians]
    print(f"{'model':18} " + " ".join(f"{f'sweep {i + 1} [ms]':>13}" for i in range(args.sweeps))
          + f" {'max diff':>9} {'relative':>9}")
    within = relative_within = 0
    for name in names:
        values = [m[name] for m in medians]
        normalised = [v / f for v, f in zip(values, factors)]
        diff, relative = max(values) / min(values) - 1, max(normalised) / min(normalised) - 1
        within += diff <= 0.1
        relative_within += relative <= 0.1
        print(f"{name:18} " + " ".join(f"{v:13.1f}" for v in values) + f" {diff:9.1%} {relative:9.1%}")
    print(f"\nmedians within 10%: {within} of {len(names)}; relative (machine factor out): {relative_within} of "
          f"{len(names)}")
    print("machine factor: " + " ".join(f"{f:.3f}" for f in factors))
    print("copy bandwidth before each sweep [GB/s]: " + " ".join(f"{b:.1f}" for b in bandwidths))
    print("wall [s]: " + " ".join(f"{w:.0f}" for w in walls))


if __name__ == "__main__":
    main()
