"""What `esr benchmark` prints and writes: the table, the challenges' published figures beside ours (from the
plugins' `Weights.challenge`), JSON, CSV and the PSNR-vs-runtime plot. Measuring is `benchmarking`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path

from .architecture import Challenge
from .benchmarking import Row
from .errors import EsrError
from .images import atomic_write

FLOPS_NOTE = ("FLOPs [G] = multiply-accumulates of convolutions and matrix products (torch FlopCounterMode / 2), "
              "as the NTIRE tables count them; Acts = elements of all Conv2d outputs; #Conv = Conv2d calls; "
              "LR input 3x{size}x{size}")


def table(rows: Sequence[Row]) -> str:
    """A text table, one line per row, in the given order, with the unit notes below."""
    header = ["model", "scale", "params [K]", "FLOPs [G]", "Acts [M]", "#Conv", "mem [MiB]",
              "runtime [ms] median (IQR) n", "Mpx/s", "PSNR"]
    lines = [[r.model, f"x{r.scale}", f"{r.params / 1e3:.1f}", f"{r.macs / 1e9:.2f}", f"{r.activations / 1e6:.2f}",
              f"{r.convs}" + (f"+{r.unhooked_convs}" if r.unhooked_convs else ""), _num(r.memory_mb, 1),
              f"{r.runtime_ms:.1f} ({r.q1_ms:.1f}-{r.q3_ms:.1f}) {r.runs}", _num(r.throughput_mpx_s, 3),
              f"{r.psnr:.4f} {r.dataset}" if r.psnr is not None else ""] for r in rows if not r.skipped]
    text = _grid(header, lines)
    measured = [r for r in rows if not r.skipped]
    if measured:
        r = measured[0]
        text += "\n" + FLOPS_NOTE.format(size=r.size) + f"; {r.device}, {r.precision}, warm-up {r.warmup}."
        text += f"\nmem: {r.memory_kind}."
        if any(r.unhooked_convs for r in measured):
            text += "\n#Conv a+b: b functional convolutions that module hooks (and NTIRE's counter) do not see."
    text += "".join(f"\nskipped {r.model}: {r.skipped}" for r in rows if r.skipped)
    return text


def challenges(rows: Sequence[Row], registry=None) -> dict[str, Challenge]:
    """The published challenge entry of each measured model whose plugin declares one, by model name."""
    from .registry import default_registry

    declared = {w.name: w.challenge for w in (registry or default_registry()).weights() if w.challenge}
    return {r.model: declared[r.model] for r in rows if r.model in declared and not r.skipped}


def compare_ntire(rows: Sequence[Row], registry=None) -> str:
    """Ours beside the challenge's published figures, for the models whose plugins declare them."""
    header = ["model", "challenge", "rank", "params [M] ours/pub", "FLOPs [G] ours/pub", "Acts [M] ours/pub",
              "#Conv ours/pub", "time [ms] / mem [MiB] (their GPU)", "source"]
    published = challenges(rows, registry)
    lines = []
    for r in rows:
        if (c := published.get(r.model)) is None:
            continue
        flops, acts = r.macs / 1e9, r.activations / 1e6
        lines.append([r.model, f"{c.event}", ", ".join(f"{track} #{rank}" for track, rank in c.ranks.items()) or "-",
                      f"{r.params / 1e6:.3f} / {_num(c.params_m, 3)}", _versus(flops, c.flops_g),
                      _versus(acts, c.activations_m), f"{r.convs} / {c.convs if c.convs is not None else '-'}",
                      f"{_num(c.runtime_ms, 2)} / {_num(c.memory_mb, 2)} ({c.gpu or '-'})", c.source])
        if c.note:
            lines.append(["", f"note: {c.note}", *[""] * 7])
    if not lines:
        return "no benchmarked model has published challenge figures (`esr models --json` shows which do)"
    return _grid(header, lines) + (
        "\nNTIRE's counter (utils/model_summary.py) also adds one FLOP per output element of nn.ReLU/LeakyReLU/PReLU"
        "\nmodules and sees only module calls (functional convolutions and matmuls are missed); ours counts every"
        "\nconvolution and matrix product at the dispatcher and no element-wise ops.")


def _versus(ours: float, theirs: float | None) -> str:
    return f"{ours:.2f} / -" if theirs is None else f"{ours:.2f} / {theirs:.2f} ({100 * (ours - theirs) / theirs:+.1f}%)"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _grid(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines])


def write_json(rows: Sequence[Row], path: str | Path) -> None:
    published = {name: dataclasses.asdict(c) for name, c in challenges(rows).items()}
    data = {"flops_note": FLOPS_NOTE.format(size=next((r.size for r in rows if r.size), 0)),
            "models": [r.to_dict() for r in rows], "challenges": published}
    atomic_write(Path(path), (json.dumps(data, indent=2) + "\n").encode())


def write_csv(rows: Sequence[Row], path: str | Path) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=[field.name for field in dataclasses.fields(Row)])
    writer.writeheader()
    writer.writerows(r.to_dict() for r in rows)
    atomic_write(Path(path), buf.getvalue().encode())


def plot(rows: Sequence[Row], path: str | Path, x: str = "runtime") -> None:
    """PSNR against runtime or FLOPs, bubble area ~ parameters, one labelled point per model, a colour per scale.

    PSNR is the measured one (--dataset) or else the plugin's Set5 reference figure, as the y label says."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EsrError("--plot needs matplotlib: pip install 'esr-cli[plot]'") from None
    if x not in ("runtime", "flops"):
        raise EsrError(f"--plot-x {x}: choose runtime or flops")
    measured = any(r.psnr is not None for r in rows)
    points = [(r, r.psnr if measured else r.reference_psnr) for r in rows if not r.skipped]
    points = [(r, y) for r, y in points if y is not None]
    if not points:
        raise EsrError("--plot needs a PSNR per model: pass --dataset, or models whose plugin gives a reference PSNR")
    scales = sorted({r.scale for r, _ in points})
    fig, axes = plt.subplots(len(scales), 1, sharex=True, squeeze=False, figsize=(9, 2 + 3.5 * len(scales)))
    dataset = next((r.dataset for r, _ in points if r.dataset), "")
    for ax, scale in zip(axes[:, 0], scales):  # one panel per scale: PSNRs of x2 and x4 are 6 dB apart
        group = [(r, y) for r, y in points if r.scale == scale]
        xs = [r.runtime_ms if x == "runtime" else r.macs / 1e9 for r, _ in group]
        ax.scatter(xs, [y for _, y in group], s=[max(r.params / 1e3, 5) for r, _ in group], alpha=0.5)
        for xv, (r, y) in zip(xs, group):
            ax.annotate(r.model, (xv, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_ylabel(f"x{scale}: " + (f"PSNR [dB], {dataset} (measured)" if measured else "Set5 Y-PSNR [dB]"))
        ax.grid(True, which="both", alpha=0.3)
    first = points[0][0]
    ax.set_xlabel(f"runtime [ms], median, {first.device} {first.precision}, {first.size}x{first.size} LR"
                  if x == "runtime" else f"FLOPs [G] (multiply-accumulates), {first.size}x{first.size} LR")
    axes[0, 0].set_title("bubble area ~ parameters" + ("" if measured else "; PSNR: the plugins' reference figures"))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())
