"""The authors' outputs, reproduced: every zoo weight, by name through a mirror, on the official Set5 LR images,
gives the Y-PSNR that the authors' own code gives (SOURCES.json `our_check`) within 0.01 dB."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED

from esr_cli import default_registry
from esr_cli.images import quantize, read_image, to_batch
from esr_cli.metrics import psnr
from esr_cli.models import load_model

SET5 = SHARED / "datasets" / "Set5"


def checked():
    path = SHARED / "zoo" / "SOURCES.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    return [e for e in entries if (e.get("our_check") or {}).get("Set5_Y_PSNR_dB")]


def set5_psnr(upscaler) -> float:
    s, values = upscaler.scale, []
    for hr_path in sorted((SET5 / "HR").glob("*.png")):
        lr = read_image(SET5 / "LR_bicubic" / f"X{s}" / f"{hr_path.stem}x{s}.png")
        sr = quantize(upscaler.upscale(to_batch(lr)), 8)[0]
        hr = read_image(hr_path).pixels[: sr.shape[0], : sr.shape[1]]
        values.append(psnr(sr, hr, border=s))
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.skipif(not checked() or not SET5.is_dir(), reason=f"needs {SHARED} (zoo weights and Set5)")
@pytest.mark.parametrize("entry", checked(), ids=lambda e: e["file"].split("/")[-1])
def test_set5_matches_the_authors_code(entry, mirror_dir, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ESR_MIRROR", str(mirror_dir))
    monkeypatch.setenv("ESR_CACHE", str(tmp_path_factory.getbasetemp() / "fidelity-cache"))
    name = next(w.name for w in default_registry().weights() if w.sha256 == entry["sha256"])
    upscaler = load_model(name, device="cpu", precision="fp32", tile=0, quiet=True)
    measured = set5_psnr(upscaler)
    assert abs(measured - entry["our_check"]["Set5_Y_PSNR_dB"]) <= 0.01, f"{name}: {measured:.4f} dB"
