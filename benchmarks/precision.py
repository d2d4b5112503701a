"""Set5 cost of each low precision, per zoo file: what the `precisions` an architecture declares must hold to.

    python benchmarks/precision.py [--device cpu] [--weights-dir ../shared/zoo/weights] [--only rlfn,span]

For every weights file (recognised by sha256), Set5 Y-PSNR in fp32, then with the weights and activations
converted to fp16 and to bf16 (how `esr` runs low precision); the cost is fp32 minus the low precision, and a
declaration holds when every file of the architecture costs at most 0.05 dB with no image rerun in fp32 (a rerun
means the precision overflowed there: its cost then hides in the rerun's fp32 output and time). On a CPU, fp16 and bf16 run
through oneDNN (fp32 accumulation in the convolutions, as cuDNN does); the GPU's figure is benchmarks/gpu.py's.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path

from esr_cli.evaluation import evaluate
from esr_cli.models import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LIMIT = 0.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", type=Path, default=SHARED / "zoo/weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated substrings of file names")
    opts = ap.parse_args()
    os.environ.setdefault("ESR_DATA", str(SHARED / "datasets"))
    files = sorted(f for f in opts.weights_dir.glob("*.pth")
                   if not opts.only or any(s in f.name for s in opts.only.split(",")))
    worst: dict[str, dict[str, float]] = defaultdict(dict)
    reruns: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    declared: dict[str, tuple[str, ...]] = {}
    print(f"{'file':28} {'arch':14} {'fp32':>8} {'fp16':>8} {'bf16':>8}  fp32 reruns fp16/bf16")
    for f in files:
        try:
            arch = load_model(f, device=opts.device, precision="fp32").model.architecture
        except Exception as e:  # noqa: BLE001 - a file no plugin loads is listed, not fatal
            print(f"{f.name:28} not loaded: {e}")
            continue
        declared[arch.name] = arch.precisions
        psnr, fallbacks = {}, {}
        for p in ("fp32", "fp16", "bf16"):
            up = load_model(f, device=opts.device, precision=p, tile=0)
            psnr[p] = evaluate([up], ["Set5"])[0].psnr
            fallbacks[p] = up.model.fallbacks
            if p != "fp32":
                worst[arch.name][p] = max(worst[arch.name].get(p, -1e9), psnr["fp32"] - psnr[p])
                reruns[arch.name][p] += fallbacks[p]
        print(f"{f.name:28} {arch.name:14} {psnr['fp32']:8.4f} {psnr['fp16'] - psnr['fp32']:+8.4f} "
              f"{psnr['bf16'] - psnr['fp32']:+8.4f}  {fallbacks['fp16']}/{fallbacks['bf16']}", flush=True)
    print(f"\n{'architecture':14} {'worst fp16':>10} {'worst bf16':>10}  declared  holds  (limit {LIMIT} dB)")
    for name, costs in sorted(worst.items()):
        holds = [p for p in ("fp16", "bf16") if costs[p] <= LIMIT and not reruns[name][p]]
        verdict = "ok" if set(declared[name]) <= set(holds) else "FIX"
        print(f"{name:14} {costs['fp16']:10.4f} {costs['bf16']:10.4f}  {','.join(declared[name]) or '-':8}  "
              f"{','.join(holds) or '-':5}  {verdict}")


if __name__ == "__main__":
    main()
