"""The seed deck's hypothesis, measured small (issue 18): "apply online convolutional re-parameterization: complex
blocks -> single convolution layer". The same network, from the same seed and the same batches, trained with its
re-parameterisable blocks (`model.reparam = true`: SPAN's Conv3XC, PlainRFDN's edge-oriented blocks) and without;
both end as the same deploy graph (model.pth is fused), so their inference FLOPs are identical. Run by hand:

  ESR_DATA=/work/shared/datasets python benchmarks/reparam.py -o runs/reparam [--arch span] \
      [--config channels=16 --config blocks=2] [--scale 2] [--iters 1500] [--equal-time]

Data: Set14 + B100 HR, 32-pixel HR patches, batch 8, L1, Adam 1e-3 cosine to 1e-5 with 20 warm-up iterations
(the CPU acceptance runs' settings, benchmarks/training_acceptance.py, with smaller patches). `--equal-time` adds a third run: the plain
network trained for as many iterations as fit in the re-param run's training time (the same CPU budget in seconds
rather than in iterations). Prints one table: Set5 Y-PSNR of the fused weights, params, FLOPs, training time.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from esr_cli.benchmarking import complexity
from esr_cli.models import load, locate
from esr_cli.recipes import load_recipe
from esr_cli.registry import default_registry
from esr_cli.training import run, validate
from training_acceptance import bicubic_psnr  # benchmarks/ is on the path when this script runs


def train(output: Path, arch: str, scale: int, config: list[str], iters: int, reparam: bool,
          extra: list[str]) -> tuple[Path, float]:
    """One run (resumable); returns model.pth and the wall time of its training loop (from log.csv)."""
    import csv

    recipe = load_recipe(None, [
        "name='reparam-bench'", "seed=0", f"model.arch='{arch}'", f"model.scale={scale}",
        *[f"model.config.{c}" for c in config], f"model.reparam={'true' if reparam else 'false'}",
        "data.train=['Set14/HR', 'B100/HR']", "data.patch=32", "data.batch=8", "data.workers=1",
        "optim.lr=1e-3", "schedule.type='cosine'", "schedule.eta_min=1e-5", "schedule.warmup=20",
        f"train.iters={iters}", "train.log_every=25", f"train.checkpoint_every={iters}", "train.device='cpu'",
        *extra])
    weights = run(recipe, output, resume=True)
    with (output / "log.csv").open() as f:
        seconds = max(float(r["elapsed_s"]) for r in csv.DictReader(f) if r["elapsed_s"])
    return weights, seconds


def figures(weights: Path) -> dict:
    match, _ = locate(str(weights), quiet=True)
    model = load(match, device="cpu", precision="fp32")
    counts = complexity(model.module, 256, model.architecture.input_range)
    value, s = validate(model.module, model.architecture, model.config, "Set5")
    return {"arch": match.architecture.name, "config": match.config, "params": counts["params"],
            "macs": counts["macs"], "psnr": value, "ssim": s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--arch", default="span", help="an architecture with a training-time variant")
    parser.add_argument("--config", action="append", default=None, help="config field=value (repeatable)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--equal-time", action="store_true", help="also train the plain network for the re-param "
                                                                     "run's training time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override")
    args = parser.parse_args()
    config = args.config if args.config is not None else ["channels=16", "blocks=2"]
    arch = default_registry().get(args.arch)
    if arch.train_build is None:
        raise SystemExit(f"{args.arch} declares no training-time variant")
    cfg = arch.config(**{k: int(v) for k, v in (c.split("=") for c in config)}, scale=args.scale)
    train_params = sum(p.numel() for p in arch.train_build(cfg).parameters())

    rows = []
    for label, reparam, iters in (("plain", False, args.iters), ("re-param", True, args.iters)):
        weights, seconds = train(args.output / label, args.arch, args.scale, config, iters, reparam,
                                 args.overrides)
        rows.append((label, iters, seconds, figures(weights)))
    if args.equal_time:
        plain_rate = rows[0][2] / rows[0][1]
        iters = max(args.iters, round(rows[1][2] / plain_rate))
        weights, seconds = train(args.output / f"plain-{iters}", args.arch, args.scale, config, iters, False,
                                 args.overrides)
        rows.append(("plain, equal time", iters, seconds, figures(weights)))

    base = bicubic_psnr("Set5", args.scale)
    first = rows[0][3]
    print(f"\n{first['arch']} {first['config']}: Set5 x{args.scale} Y-PSNR of the fused weights (fp32, CPU); "
          f"bicubic {base:.4f} dB; training-time params with re-param blocks {train_params:,}")
    print(f"{'trained':<18} {'iters':>6} {'train s':>8} {'params':>8} {'FLOPs (G)':>10} {'Set5 PSNR':>10} "
          f"{'SSIM':>7} {'vs plain':>9}")
    for label, iters, seconds, f in rows:
        print(f"{label:<18} {iters:>6} {seconds:>8.0f} {f['params']:>8,} {f['macs'] / 1e9:>10.3f} "
              f"{f['psnr']:>10.4f} {f['ssim']:>7.4f} {f['psnr'] - first['psnr']:>+9.3f}")
    same = all(r[3]["macs"] == first["macs"] and r[3]["params"] == first["params"] for r in rows)
    print("inference params and FLOPs identical across rows" if same else "WARNING: the deploy graphs differ")


if __name__ == "__main__":
    main()
