"""Pruning, measured (issue 18): params and FLOPs, and Set5 Y-PSNR of a model before pruning, right after
`esr prune` and after a short CPU fine-tune of the pruned model. Run by hand (not in the test suite):

  ESR_DATA=/work/shared/datasets python benchmarks/prune.py -o runs/prune \
      [--model rlfn-x4 | --model /work/shared/zoo/weights/rlfn_paper_x4.pth] [--channels 46] [--iters 400]

The fine-tune is `esr finetune -m PRUNED -d Set14/HR -d B100/HR` without degradations (L1, Adam 2e-4 cosine to
1e-6, 64-pixel HR patches (16-pixel LR), batch 8), no Set5 image among its data. FLOPs are multiply-accumulates
on a 256x256 input, as the NTIRE tables count them (esr_cli.benchmarking.complexity). Prints one table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from esr_cli.benchmarking import complexity
from esr_cli.models import load
from esr_cli.pruning import prune_model
from esr_cli.recipes import finetune_recipe
from esr_cli.training import run, validate


def figures(ref: str) -> dict:
    """params, MACs (256x256) and Set5 Y-PSNR / SSIM of a zoo name or weights file."""
    from esr_cli.models import locate

    match, _ = locate(ref, quiet=True)
    model = load(match, device="cpu", precision="fp32")
    counts = complexity(model.module, 256, model.architecture.input_range)
    psnr, ssim = validate(model.module, model.architecture, model.config, "Set5")
    return {"config": match.config, "params": counts["params"], "macs": counts["macs"], "psnr": psnr, "ssim": ssim}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rlfn-x4", help="zoo name or weights file of a prunable architecture")
    parser.add_argument("--channels", type=int, default=46)
    parser.add_argument("--iters", type=int, default=400, help="fine-tune iterations")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the pruned file and the run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="fine-tune recipe override")
    args = parser.parse_args()

    pruned_path = args.output / f"pruned-{args.channels}.pth"
    rows = [("before", figures(args.model), "")]
    done = prune_model(args.model, args.channels, pruned_path, quiet=True)
    rows.append((f"pruned to {args.channels}", figures(str(pruned_path)), ""))
    recipe = finetune_recipe(str(pruned_path), ["Set14/HR", "B100/HR"], [], overrides=[
        "optim.lr=2e-4", "schedule.eta_min=1e-6", f"train.iters={args.iters}", "data.patch=64", "data.batch=8",
        "data.workers=1", "train.log_every=25", f"train.checkpoint_every={args.iters}", "train.device='cpu'",
        *args.overrides])
    start = time.monotonic()
    tuned = run(recipe, args.output / "finetune", resume=True)
    minutes = (time.monotonic() - start) / 60
    rows.append((f"+ fine-tune {recipe['train']['iters']} it", figures(str(tuned)), f"{minutes:.1f} min"))

    first = rows[0][1]
    print(f"\n{done.before.architecture.name}: {args.model}, Set5 x{first['config'].scale} Y-PSNR (fp32, CPU)")
    print(f"{'':<22} {'channels':>8} {'params':>9} {'FLOPs (G)':>10} {'Set5 PSNR':>10} {'SSIM':>7} {'dB':>7}  time")
    for label, f, note in rows:
        width = getattr(f["config"], "channels", "-")
        print(f"{label:<22} {width:>8} {f['params']:>9,} {f['macs'] / 1e9:>10.2f} {f['psnr']:>10.4f} "
              f"{f['ssim']:>7.4f} {f['psnr'] - first['psnr']:>+7.3f}  {note}")
    pruned = rows[1][1]
    print(f"params {first['params'] - pruned['params']:,} fewer ({1 - pruned['params'] / first['params']:.1%}), "
          f"FLOPs {1 - pruned['macs'] / first['macs']:.1%} fewer")


if __name__ == "__main__":
    main()
