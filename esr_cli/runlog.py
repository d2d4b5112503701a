"""The run log: log.csv (one row per log interval and per validation), curves.png, TensorBoard when installed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .images import atomic_write


class Log:
    """Rows of a run: appended as they come, cut back to the checkpoint on resume."""

    FIELDS = ["iter", "epoch", "lr", "loss", "terms", "val_psnr", "val_ssim", "elapsed_s"]

    def __init__(self, run_dir: Path, resume_at: int) -> None:
        self.path, self.run_dir = run_dir / "log.csv", run_dir
        rows = self.rows() if resume_at else []
        # drop what the interrupted run logged after its checkpoint (and a line cut short by a kill)
        self._write([r for r in rows if (r.get("iter") or "").isdigit() and int(r["iter"]) <= resume_at
                     and r.get("elapsed_s")])
        self.tb = _tensorboard(run_dir)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, buf.getvalue().encode())

    def add(self, **row) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow(row)
        if self.tb is not None:
            for key in ("loss", "lr", "val_psnr", "val_ssim"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(key, float(row[key]), int(row["iter"]))

    def plot(self) -> str | None:
        """curves.png from log.csv; a note instead when matplotlib is missing."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            return "matplotlib is not installed: no curves.png"
        rows = self.rows()
        losses = [(int(r["iter"]), float(r["loss"])) for r in rows if r["loss"]]
        vals = [(int(r["iter"]), float(r["val_psnr"])) for r in rows if r["val_psnr"]]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        if losses:
            a.plot(*zip(*losses))
        a.set(xlabel="iteration", ylabel="training loss", yscale="log" if losses else "linear")
        if vals:
            b.plot(*zip(*vals), marker="o")
        b.set(xlabel="iteration", ylabel="validation Y-PSNR (dB)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write(self.run_dir / "curves.png", buf.getvalue())
        return None


def _tensorboard(run_dir: Path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))
