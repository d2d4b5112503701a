"""Issue 9 acceptance experiments, run by hand (not in the test suite); CPU-sized.

  ESR_DATA=/work/shared/datasets python benchmarks/training_acceptance.py scratch  -o runs/acc-a
  ESR_DATA=/work/shared/datasets python benchmarks/training_acceptance.py finetune -o runs/acc-b \
      [--base /work/shared/zoo/weights/rlfn_s_x2.pth]

(a) RLFN-S x2 from scratch (recipes/rlfn_s_x2_cpu.toml): training loss first vs last, Set5 Y-PSNR vs bicubic.
(b) rlfn-s-x2 fine-tuned with blur + noise (recipes/finetune_rlfn_s_x2_cpu.toml): Set5 Y-PSNR of the pretrained and
    the fine-tuned weights, on the degraded LR (same degradations, fixed seed) and on the clean LR.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from esr_cli.degradations import Degradations
from esr_cli.compare import bicubic_upscale
from esr_cli.datasets import load_dataset, load_pair
from esr_cli.metrics import psnr
from esr_cli.models import load_model
from esr_cli.recipes import finetune_recipe, load_recipe
from esr_cli.training import run, validate

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def bicubic_psnr(folder: str, scale: int) -> float:
    scores = []
    for pair in load_dataset(folder, scale).pairs:
        hr, lr = load_pair(pair, scale)
        scores.append(psnr(bicubic_upscale(lr, scale), hr, scale))
    return float(np.mean(scores))


def losses(run_dir: Path) -> list[float]:
    """Training-loss rows of every stage's log.csv, in stage order."""
    import csv

    rows = []
    for log in sorted(run_dir.glob("**/log.csv")):
        with log.open() as f:
            rows += [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
    return rows


def scratch(output: Path, overrides: list[str], base: str = "") -> None:
    start = time.monotonic()
    weights = run(load_recipe(RECIPES / "rlfn_s_x2_cpu.toml", overrides), output, resume=True)
    model = load_model(weights, device="cpu", precision="fp32")
    ours, _ = validate(model.module, model.architecture, model.config, "Set5")
    trace = losses(output)
    print(f"(a) {time.monotonic() - start:.0f} s; training loss {trace[0]:.5f} -> {trace[-1]:.5f}; "
          f"Set5 x2 Y-PSNR ours {ours:.4f} dB vs bicubic {bicubic_psnr('Set5', 2):.4f} dB")


def finetune(output: Path, overrides: list[str], base: str) -> None:
    recipe = finetune_recipe(base, ["Set14/HR", "B100/HR"], [], "Set5",
                             RECIPES / "finetune_rlfn_s_x2_cpu.toml", overrides)
    start = time.monotonic()
    weights = run(recipe, output, resume=True)
    minutes = (time.monotonic() - start) / 60
    degrade = Degradations.from_table(recipe["degrade"])
    for label, ref in (("pretrained", base), ("fine-tuned", str(weights))):
        m = load_model(ref, device="cpu", precision="fp32").model
        noisy, _ = validate(m.module, m.architecture, m.config, "Set5", degrade, recipe["seed"])
        clean, _ = validate(m.module, m.architecture, m.config, "Set5")
        print(f"(b) {label:<10}  Set5 x2 Y-PSNR blurred+noisy {noisy:.4f} dB   clean {clean:.4f} dB")
    print(f"(b) training took {minutes:.1f} min of wall time")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=["scratch", "finetune"])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--base", default="rlfn-s-x2", help="pretrained weights to fine-tune: zoo name or file")
    args = parser.parse_args()
    {"scratch": scratch, "finetune": finetune}[args.experiment](args.output, args.overrides, args.base)
