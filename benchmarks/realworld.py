"""Issue 17 acceptance: real-world inputs, run by hand (not in the test suite); CPU-sized.

  python benchmarks/realworld.py sheet [-o docs/realworld_sheet.png] [--crop 128 --zoom 2] [--finetuned RUN/model.pth]
  python benchmarks/realworld.py finetune -o runs/realworld-ft [--set train.iters=300 --set data.patch=96 ...]

sheet     A contact sheet of the three JPEGs in ../shared/realworld/inputs (B100 HR, bicubic x4 down, JPEG q40):
          rows = images; columns = the input (nearest x4), bicubic (MATLAB imresize), a bicubic-trained model
          (rlfn-x4), optionally that model after `finetune`, the real-world model realesr-general-x4v3 and the
          B100 original. Each panel is the crop where bicubic and the models differ most. One PNG; prints Y-PSNR /
          SSIM against the B100 originals.
finetune  rlfn-x4 fine-tuned with recipes/finetune_realworld.toml on B100 HR minus a held-out set (every 10th
          B100 image), then Y-PSNR / SSIM (`esr evaluate`'s protocol: Y, 4 pixels shaved) on the held-out set
          degraded by the same pipeline with a fixed seed (esr_cli.realworld.write_pairs), and on its clean bicubic
          LR: base vs fine-tuned vs realesr-general-x4v3.

The official Real-ESRGAN release files are not reachable here. realesr-general-x4v3 is
../shared/realworld/converted/realesr-general-x4v3.from-ncnn.pth: a state dict converted back from upscayl's ncnn
fp16 file (fp16-rounded weights; NOT the official file, for testing only; see ../shared/realworld/README.md). Its
figures here are figures of that conversion, not of the official weights.

Everything runs through esr's API: esr_cli.models.load_model, esr_cli.upscaling.upscale_picture (the path of
`esr upscale`), esr_cli.evaluation, esr_cli.training.run. Weights named from the zoo (rlfn-x4) are taken from
../shared/zoo/weights when a file there has the zoo entry's sha256 (esr recognises it as that entry), else fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from esr_cli.compare import bicubic_upscale, most_different
from esr_cli.datasets import load_dataset, load_pair
from esr_cli.evaluation import Protocol, Result, evaluate_dataset
from esr_cli.images import read_image
from esr_cli.metrics import psnr, ssim
from esr_cli.models import is_path, load_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REALWORLD = SHARED / "realworld"
CONVERTED = REALWORLD / "converted" / "realesr-general-x4v3.from-ncnn.pth"
B100 = SHARED / "datasets" / "B100" / "HR"
RECIPE = ROOT / "recipes" / "finetune_realworld.toml"
SCALE = 4
CONVERTED_NOTE = ("realesr-general-x4v3: weights converted back from upscayl's ncnn fp16 file, not the official "
                  "release (testing only)")


def local_ref(ref: str) -> str:
    """A zoo name -> the file of ../shared/zoo/weights with that entry's sha256 (esr treats it as the entry), when
    there is one; anything else unchanged."""
    from esr_cli.registry import default_registry
    from esr_cli.zoo import resolve

    sources = SHARED / "zoo" / "SOURCES.json"
    if is_path(ref) or not sources.is_file():
        return ref
    _, weights = resolve(default_registry(), ref, None)
    for entry in json.loads(sources.read_text()):
        if entry["sha256"].lower() == weights.sha256.lower() and (SHARED / "zoo" / entry["file"]).is_file():
            return str(SHARED / "zoo" / entry["file"])
    return ref


def upscaler(ref: str):
    """fp32 on the CPU, whole image: the figures do not depend on the machine's bf16 support."""
    return load_model(local_ref(ref), device="cpu", precision="fp32", tile=0, quiet=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# ---- the contact sheet ---------------------------------------------------------------------------

def sheet(args: argparse.Namespace) -> None:
    from PIL import Image

    from esr_cli.upscaling import upscale_picture

    files = sorted(Path(args.inputs).glob("*.jpg"))
    if not files:
        sys.exit(f"no .jpg inputs in {args.inputs}")
    models = [(args.base, upscaler(args.base)), ("realesr-general-x4v3*", upscaler(args.realworld))]
    if args.finetuned:
        models.insert(1, (f"{args.base} realworld-ft", upscaler(args.finetuned)))
    columns = ["input (JPEG, nearest x4)", "bicubic", *(f"{label}" for label, _ in models), "B100 original"]
    have_hr = all((Path(args.hr) / f"{f.stem}.png").is_file() for f in files)
    if not have_hr:
        columns = columns[:-1]
    rows, figures = [], []
    for file in files:
        picture = read_image(file)
        lr = np.repeat(picture.pixels, 3, axis=2) if picture.gray else picture.pixels
        outputs = [("bicubic", bicubic_upscale(lr, SCALE))]
        for label, up in models:
            start = time.monotonic()
            outputs.append((label, upscale_picture(up, picture).pixels))
            print(f"{file.stem}: {label} {time.monotonic() - start:.2f} s", file=sys.stderr)
        h, w = lr.shape[0] * SCALE, lr.shape[1] * SCALE
        hr = np.array(Image.open(Path(args.hr) / f"{file.stem}.png").convert("RGB"))[:h, :w] if have_hr else None
        size = min(args.crop, h, w)
        _, top, left = most_different([sr for _, sr in outputs], size)
        nearest = np.repeat(np.repeat(lr, SCALE, axis=0), SCALE, axis=1)
        panels = [("", nearest)]
        for label, sr in outputs:
            if hr is None:
                panels.append(("", sr))
                continue
            p, s = psnr(sr, hr, SCALE), ssim(sr, hr, SCALE)
            rows.append([file.stem, label, f"{p:.2f}", f"{s:.4f}"])
            panels.append((f"{p:.2f} dB / {s:.3f}", sr))
        if hr is not None:
            panels.append(("reference", hr))
        crops = [(text, a[top:top + size, left:left + size]) for text, a in panels]
        figures.append((f"{file.stem} ({lr.shape[1]}x{lr.shape[0]})", lr, (top, left, size), crops))
    notes = [f"* {CONVERTED_NOTE}."]
    if args.finetuned:
        notes.append(f"{args.base} realworld-ft: {args.base} fine-tuned with recipes/finetune_realworld.toml "
                     f"(benchmarks/realworld.py finetune{run_settings(Path(args.finetuned))}).")
    image = contact_sheet(columns, figures, args.zoom,
                          [*notes,
                           f"Crops of {args.crop}x{args.crop} output pixels shown x{args.zoom} (nearest), where "
                           "bicubic and the networks differ most; labels: Y-PSNR / SSIM vs the B100 original "
                           "(4 px shaved).",
                           "Inputs: B100 HR, Pillow bicubic x4 down, JPEG quality 40. "
                           "fp32, CPU, esr_cli API (benchmarks/realworld.py)."])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"wrote {out} ({image.width}x{image.height}, {out.stat().st_size / 1024:.0f} KiB)")
    if rows:
        print(table(["image", "method", "Y-PSNR (dB)", "SSIM"], rows))
        means = {}
        for _, label, p, s in rows:
            means.setdefault(label, []).append((float(p), float(s)))
        print(table(["method", "mean Y-PSNR (dB)", "mean SSIM"],
                    [[k, f"{np.mean([a for a, _ in v]):.2f}", f"{np.mean([b for _, b in v]):.4f}"]
                     for k, v in means.items()]))


def run_settings(weights: Path) -> str:
    """", N iterations, HR patch P, batch B" from the recipe.json beside a run's weights, when there is one."""
    recipe = weights.parent / "recipe.json"
    if not recipe.is_file():
        return ""
    r = json.loads(recipe.read_text())
    return f"; {r['train']['iters']} iterations, HR patch {r['data']['patch']}, batch {r['data']['batch']}"


def contact_sheet(columns: list[str], figures: list, zoom: int, notes: list[str]):
    """Rows of [whole input with the crop marked, crop per column], column titles on top, notes below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    panel = max(size for *_, (_, _, size), _ in figures) * zoom
    gap, head, foot, thumb_w = 6, 24, 20, panel
    width = gap + thumb_w + len(columns) * (gap + panel) + gap
    row_h = panel + foot + gap
    height = head + len(figures) * row_h + gap + 16 * len(notes) + gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = gap + thumb_w + gap
    for title in columns:
        draw.text((x, 5), title, fill="black", font=font)
        x += panel + gap
    for r, (name, lr, (top, left, size), crops) in enumerate(figures):
        y = head + r * row_h
        fit = min(thumb_w / lr.shape[1], panel / lr.shape[0])
        thumb = Image.fromarray(lr).resize((round(lr.shape[1] * fit), round(lr.shape[0] * fit)), Image.NEAREST)
        k = fit / SCALE  # output pixels -> thumbnail pixels
        ImageDraw.Draw(thumb).rectangle([round(left * k), round(top * k), round((left + size) * k) - 1,
                                         round((top + size) * k) - 1], outline=(255, 0, 0), width=2)
        sheet.paste(thumb, (gap, y))
        draw.text((gap, y + thumb.height + 3), name, fill="black", font=font)
        x = gap + thumb_w + gap
        for text, crop in crops:
            sheet.paste(Image.fromarray(np.ascontiguousarray(crop)).resize((size * zoom, size * zoom),
                                                                           Image.NEAREST), (x, y))
            draw.text((x, y + panel + 3), text, fill="black", font=font)
            x += panel + gap
    y = head + len(figures) * row_h + gap
    for note in notes:
        draw.text((gap, y), note, fill=(60, 60, 60), font=small)
        y += 16
    return sheet


# ---- the fine-tune measurement -------------------------------------------------------------------

def link_folder(files: list[Path], folder: Path) -> Path:
    """`folder` holding exactly `files` (symlinks, else copies)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in files:
        try:
            os.symlink(f.resolve(), folder / f.name)
        except OSError:
            shutil.copyfile(f, folder / f.name)
    return folder


def bicubic_result(folder: Path) -> Result:
    scores = []
    for pair in load_dataset(folder, SCALE).pairs:
        hr, lr = load_pair(pair, SCALE)
        sr = bicubic_upscale(lr, SCALE)
        scores.append((psnr(sr, hr, SCALE), ssim(sr, hr, SCALE)))
    return Result("bicubic", folder.name, SCALE, float(np.mean([p for p, _ in scores])),
                  float(np.mean([s for _, s in scores])))


def finetune(args: argparse.Namespace) -> None:
    from esr_cli.data import list_images
    from esr_cli.realworld import RealWorld, write_pairs
    from esr_cli.recipes import finetune_recipe
    from esr_cli.training import run

    began = time.monotonic()
    out = Path(args.output)
    files = list_images(Path(args.hr))
    held = files[::args.every]
    train = [f for f in files if f not in held]
    base = local_ref(args.base)
    recipe = finetune_recipe(base, [str(link_folder(train, out / "train_hr"))], [], None, RECIPE, args.overrides)
    pipeline = RealWorld.from_table(recipe["degrade"])
    degraded, clean = out / "heldout_realworld", out / "heldout_clean"
    if degraded.exists():
        shutil.rmtree(degraded)
    write_pairs(held, degraded, pipeline, SCALE, seed=args.pair_seed)
    link_folder(held, clean)  # HR only: the LR is made by the MATLAB bicubic, as `esr evaluate` does
    print(f"held out {len(held)} of {len(files)} B100 images ({', '.join(f.stem for f in held)}); training on "
          f"{len(train)}; held-out pairs degraded with seed {args.pair_seed}: {pipeline.describe()}")
    d, t = recipe["data"], recipe["train"]
    print(f"fine-tune: {base}, {t['iters']} iterations, HR patch {d['patch']}, batch {d['batch']}, "
          f"loss {recipe['loss']}, lr {recipe['optim']['lr']} {recipe['schedule']['type']}")
    start = time.monotonic()
    prepared = start - began
    weights = run(recipe, out / "run", resume=True)
    minutes = (time.monotonic() - start) / 60
    start = time.monotonic()
    models = [("base (" + Path(args.base).stem + ")", upscaler(base)), ("fine-tuned", upscaler(str(weights))),
              ("realesr-general-x4v3*", upscaler(args.realworld))]
    ups = [u for _, u in models]
    protocol = Protocol()  # `esr evaluate`: Y channel, `scale` pixels shaved, 8-bit outputs
    on_degraded = evaluate_dataset(ups, load_dataset(degraded, SCALE), SCALE, protocol)
    on_clean = evaluate_dataset(ups, load_dataset(clean, SCALE), SCALE, protocol)
    results = [("bicubic", bicubic_result(degraded), bicubic_result(clean))]
    results += [(label, a, b) for (label, _), a, b in zip(models, on_degraded, on_clean)]
    rows = [[label, f"{a.psnr:.2f} / {a.ssim:.4f}", f"{b.psnr:.2f} / {b.ssim:.4f}"] for label, a, b in results]
    print(table(["model", f"held-out realworld-degraded x4 ({len(held)})", f"held-out clean bicubic x4 ({len(held)})"],
                rows))
    print("Y-PSNR (dB) / SSIM, Y channel, 4 px shaved, 8-bit outputs.  * " + CONVERTED_NOTE +
          "; it was trained (by its authors) on a different data set and towards sharpened targets with GAN and "
          "perceptual losses, so it is not tuned for PSNR against plain HR.")
    print(f"wall time: preparing the data {prepared:.0f} s, training {minutes:.1f} min (this call; 0 if it was "
          f"finished before), evaluating {time.monotonic() - start:.0f} s; weights {weights}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base", default="rlfn-x4", help="bicubic-trained model: zoo name or weights file")
    common.add_argument("--realworld", default=str(CONVERTED), help="the real-world model: weights file or zoo name")
    s = sub.add_parser("sheet", parents=[common], help="the contact sheet")
    s.add_argument("-o", "--output", default=str(ROOT / "docs" / "realworld_sheet.png"))
    s.add_argument("--inputs", default=str(REALWORLD / "inputs"))
    s.add_argument("--hr", default=str(B100), help="folder of the originals (same stems); absent: no HR column")
    s.add_argument("--crop", type=int, default=128, help="crop side in output pixels")
    s.add_argument("--zoom", type=int, default=2, help="nearest-neighbour enlargement of the crops")
    s.add_argument("--finetuned", help="also a column for these weights (the `finetune` mode's run/model.pth)")
    f = sub.add_parser("finetune", parents=[common], help="fine-tune and measure")
    f.add_argument("-o", "--output", type=Path, required=True, help="work folder (data links, pairs, run)")
    f.add_argument("--hr", default=str(B100), help="HR images: every --every-th is held out, the rest trains")
    f.add_argument("--every", type=int, default=10)
    f.add_argument("--pair-seed", type=int, default=0, help="seed of the held-out degradations (write_pairs)")
    f.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override (repeatable)")
    args = parser.parse_args()
    {"sheet": sheet, "finetune": finetune}[args.mode](args)
