"""Images a format cannot hold as they are: converted (LA as BMP) or written with real EXIF only (TIFF in, TIFF out)."""

from __future__ import annotations

import numpy as np
from hostile import esr
from PIL import Image


def test_tiff_in_tiff_out_and_gray_alpha_as_bmp(tmp_path, user_weights):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "scan.tif")
    Image.fromarray(rng.integers(0, 256, (12, 16, 2), dtype=np.uint8), mode="LA").save(folder / "mask.png")
    run = esr("upscale", folder / "scan.tif", "-o", tmp_path / "out", "--model", user_weights, "-q")
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out" / "scan_x2.tif").size == (32, 24)
    run = esr("upscale", folder / "mask.png", "-o", tmp_path / "out", "--model", user_weights, "-q", "--format", "bmp")
    assert run.returncode == 0, run.stderr
    bmp = Image.open(tmp_path / "out" / "mask_x2.bmp")
    assert bmp.size == (32, 24) and bmp.mode in ("RGB", "RGBA")  # written as 32-bit RGBA (Pillow may read it as RGB)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]
