"""`esr upscale` as a batch: bad inputs, existing outputs, interruption, folders and names, every image kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from tiny import TinyConfig, tiny, tiny_weights
from torch import nn

from esr_cli import images
from esr_cli.engine import Upscaler
from esr_cli.loaded import LoadedModel
from esr_cli.errors import EsrError
from esr_cli.images import quantize, read_image, to_batch
from esr_cli.resize import imresize
from esr_cli.upscaling import plan, upscale_files

TESTS = Path(__file__).resolve().parent
SHARED = TESTS.parents[1] / "shared"
LAUNCH = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from tiny import tiny; "
          "from esr_cli.registry import default_registry; default_registry().architectures['tiny'] = tiny; "
          "from esr_cli.cli import main; sys.argv[0] = 'esr'; main()")
"""`python -m esr_cli` with the tiny test architecture registered, as if its plugin were installed."""


def esr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, "upscale", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def rgb(path: Path, size=(20, 12), seed=0, **save) -> Path:
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, **save)
    return path


class Nearest(nn.Module):
    """An exact stand-in network: nearest-neighbour x2, so that expected outputs are known pixel for pixel."""

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def nearest() -> Upscaler:
    return Upscaler(LoadedModel(Nearest(), tiny, TinyConfig(scale=2)))


def run(sources, out: Path, upscaler=None, fmt="same", **kw):
    jobs = plan(sources, out, 2, fmt=fmt, recursive=kw.pop("recursive", False))
    return upscale_files(jobs, upscaler or nearest(), quiet=True, report=lambda msg: None, **kw)


# ---- through the command line ---------------------------------------------------------------------

def test_bad_files_mid_batch_existing_outputs_and_resume(tmp_path):
    tiny_weights(tmp_path / "tiny.pth")
    src = tmp_path / "in"
    rgb(src / "a.png"), rgb(src / "e.png", seed=4), rgb(src / "f.png", size=(40, 40))
    (src / "b.png").write_text("not an image")
    data = (src / "a.png").read_bytes()
    (src / "c.png").write_bytes(data[: len(data) // 2])
    (src / "d.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(50))
    first = esr(src, "-o", tmp_path / "out", "--model", tmp_path / "tiny.pth", "--max-pixels", 1000, "-q")
    errors = [line for line in first.stderr.splitlines() if line.startswith("esr: error")]
    assert first.returncode == 1 and len(errors) == 4 and "Traceback" not in first.stderr, first.stderr
    assert "max-pixels" in first.stderr and "2 written, 0 skipped, 4 failed" in first.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png", "e_x2.png"]

    good = [src / "a.png", src / "e.png", src / "f.png"]
    refused = esr(*good, "-o", tmp_path / "out", "--model", tmp_path / "tiny.pth", "-q")
    assert refused.returncode == 1 and "a_x2.png exists" in refused.stderr and len(refused.stderr.splitlines()) == 1
    resumed = esr(*good, "-o", tmp_path / "out", "--model", tmp_path / "tiny.pth", "-q", "--skip-existing")
    assert resumed.returncode == 0 and "1 written, 2 skipped, 0 failed" in resumed.stderr
    (tmp_path / "out" / "a_x2.png").write_bytes(b"stale")
    again = esr(src / "a.png", "-o", tmp_path / "out", "--model", tmp_path / "tiny.pth", "-q", "--overwrite")
    assert again.returncode == 0 and Image.open(tmp_path / "out" / "a_x2.png").size == (40, 24)


def test_recursive_tree_suffix_and_format(tmp_path):
    tiny_weights(tmp_path / "tiny.pth")
    rgb(tmp_path / "in" / "top.png"), rgb(tmp_path / "in" / "sub" / "deep" / "low.jpg", quality=95)
    done = esr(tmp_path / "in", "-r", "-o", tmp_path / "out", "--model", tmp_path / "tiny.pth", "-q",
               "--suffix", "_big", "--format", "tiff")
    assert done.returncode == 0, done.stderr
    made = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert made == ["sub/deep/low_big.tif", "top_big.tif"]
    assert Image.open(tmp_path / "out" / "top_big.tif").format == "TIFF"


# ---- through the Python API -----------------------------------------------------------------------

def test_interruption_leaves_no_partial_file_and_skip_existing_resumes(tmp_path, monkeypatch):
    sources = [rgb(tmp_path / "in" / f"{i}.png", seed=i) for i in range(3)]
    real_create, calls = images._create, []

    def interrupted(tmp, target):
        calls.append(target)
        if len(calls) == 2:  # the temporary file of the 2nd image is complete: Ctrl-C before the rename
            raise KeyboardInterrupt
        real_create(tmp, target)

    monkeypatch.setattr(images, "_create", interrupted)  # the final step of a write that replaces nothing
    with pytest.raises(KeyboardInterrupt):
        run(sources, tmp_path / "out")
    monkeypatch.setattr(images, "_create", real_create)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())  # a write already under way may finish
    assert left in (["0_x2.png"], ["0_x2.png", "2_x2.png"]), left  # no .part file, no 2nd image
    assert all(Image.open(tmp_path / "out" / name).size == (40, 24) for name in left)
    summary = run(sources, tmp_path / "out", existing="skip")
    assert len(summary.skipped) == len(left) and len(summary.written) == 3 - len(left) and not summary.failed
    with pytest.raises(EsrError, match="exists"):
        run(sources, tmp_path / "out")


def test_globs_and_name_templates(tmp_path):
    for name in ("a.png", "b.jpg", "c.png"):
        rgb(tmp_path / "in" / name)
    jobs = plan([str(tmp_path / "in" / "*.png")], tmp_path / "out", 4, template="{model}-{stem}@{scale}.{ext}",
                model="rlfn")
    assert [j.target.name for j in jobs] == ["rlfn-a@4.png", "rlfn-c@4.png"]
    assert [j.target.name for j in plan([tmp_path / "in"], None, 2, fmt="webp")] == ["a_x2.webp", "b_x2.webp",
                                                                                     "c_x2.webp"]
    with pytest.raises(EsrError, match="no file matches"):
        plan([str(tmp_path / "none*.png")], tmp_path, 2)


def test_16_bit_gray_and_alpha_kept_through_the_batch(tmp_path):
    a16 = np.random.default_rng(0).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    images.write_image(tmp_path / "in" / "deep.png", images.Picture(a16))
    gray = np.random.default_rng(1).integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "in" / "gray.png")
    rgba = np.random.default_rng(2).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in" / "alpha.png")
    assert len(run([tmp_path / "in"], tmp_path / "out").written) == 3
    up = read_image(tmp_path / "out" / "deep_x2.png")
    assert up.bits == 16 and np.array_equal(up.pixels, a16.repeat(2, 0).repeat(2, 1))
    assert Image.open(tmp_path / "out" / "gray_x2.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "gray_x2.png")), gray.repeat(2, 0).repeat(2, 1))
    out = Image.open(tmp_path / "out" / "alpha_x2.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out), rgba.repeat(2, 0).repeat(2, 1))


def test_palette_cmyk_orientation_and_icc_through_the_batch(tmp_path):
    p = Image.new("P", (4, 3))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((1, 1), 1)
    (tmp_path / "in").mkdir()
    p.save(tmp_path / "in" / "pal.png")
    Image.new("CMYK", (5, 3), (0, 255, 255, 0)).save(tmp_path / "in" / "cmyk.jpg")
    marked = np.zeros((4, 6, 3), np.uint8)
    marked[0, 0] = 255
    im = Image.fromarray(marked)
    exif = im.getexif()
    exif[images.ORIENTATION] = 6
    im.save(tmp_path / "in" / "turned.jpg", exif=exif, quality=100)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb(tmp_path / "in" / "icc.png", icc_profile=icc)
    assert len(run([tmp_path / "in"], tmp_path / "out").written) == 4
    pal = np.asarray(Image.open(tmp_path / "out" / "pal_x2.png"))
    assert pal.shape == (6, 8, 3) and tuple(pal[2, 2]) == (0, 0, 255) and tuple(pal[0, 0]) == (255, 0, 0)
    cmyk = Image.open(tmp_path / "out" / "cmyk_x2.jpg")
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[..., 0].mean() > 200
    turned = Image.open(tmp_path / "out" / "turned_x2.jpg")
    assert turned.size == (8, 12) and np.asarray(turned)[0, -1].mean() > 150
    assert turned.getexif().get(images.ORIENTATION, 1) == 1
    assert Image.open(tmp_path / "out" / "icc_x2.png").info.get("icc_profile") == icc


@pytest.mark.parametrize("fmt,name", [("jpg", "JPEG"), ("webp", "WEBP"), ("tiff", "TIFF")])
def test_output_formats(tmp_path, fmt, name):
    run([rgb(tmp_path / "a.png")], tmp_path / "out", fmt=fmt)
    assert Image.open(next((tmp_path / "out").iterdir())).format == name


def test_outscale_gives_the_requested_size_by_imresize(tmp_path):
    up = Upscaler(LoadedModel(tiny_weights(tmp_path / "tiny.pth"), tiny, TinyConfig()))
    src = rgb(tmp_path / "a.png", size=(10, 8))
    run([src], tmp_path / "out", upscaler=up, outscale=3)
    out = np.asarray(Image.open(tmp_path / "out" / "a_x2.png"))
    expected = quantize(imresize(up.upscale(to_batch(read_image(src))), size=(24, 30)), 8)[0]
    assert out.shape == (24, 30, 3) and np.array_equal(out, expected)


def test_max_pixels_refuses_one_image_and_the_batch_goes_on(tmp_path):
    small, big = rgb(tmp_path / "s.png"), rgb(tmp_path / "b.png", size=(50, 40))
    summary = run([small, big], tmp_path / "out", max_pixels=1000)
    assert [p.name for p in summary.written] == ["s_x2.png"]
    assert len(summary.failed) == 1 and "max-pixels" in summary.failed[0][1]


# ---- tiled against untiled ------------------------------------------------------------------------

def _worst(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """The largest difference in 8-bit levels, and the share of pixels that differ at all."""
    d = np.abs(a.astype(int) - b.astype(int))
    return int(d.max()), float((d > 0).mean())


RANDOM = {  # small configs: a local network, and two whose attention reads the whole image (esr_cli.tiling)
    "pan": {"nf": 16, "unf": 8, "nb": 2},
    "rlfn": {"channels": 16, "mid_channels": 16, "esa_channels": 8, "blocks": 3},
    "mdrn": {"num_feat": 16, "num_blocks": 2},
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_tiled_equals_untiled_with_random_weights_of_a_real_architecture(name):
    from esr_cli import default_registry

    arch = default_registry().architectures.get(name)
    if arch is None:
        pytest.skip(f"needs the plugin that provides {name}")
    torch.manual_seed(0)
    config = arch.config(scale=2, **RANDOM[name])
    up = Upscaler(LoadedModel(arch.build(config), arch, config))
    x = torch.rand(1, 3, 150, 140)
    whole = quantize(up.upscale(x), 8)
    for tile in (64, 128):
        up.tile = tile
        worst, share = _worst(quantize(up.upscale(x), 8), whole)
        assert worst <= 1 and share < 1e-3, (tile, worst, share)


SET14_LARGEST = ("barbara", "monarch", "ppt3", "zebra")  # the most tiles, so the most seams


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["rlfn_paper_x4.pth", "mdrn_paper_x4.pth", "imdn_paper_x4.pth",
                                     "pan_paper_x4.pth", "imdn_plus_ntire22_x4.pth", "gfmn_ntire23_x4.pth"])
def test_tiled_equals_untiled_on_set14_with_real_weights(weights):
    """At the architecture's default overlap: at most 1 level, on fewer than 0.1% of the pixels."""
    from esr_cli.models import load_model

    if not (SHARED / "zoo/weights" / weights).is_file():
        pytest.skip(f"needs {SHARED / 'zoo/weights' / weights} (shared zoo absent)")
    up = load_model(SHARED / "zoo/weights" / weights, device="cpu", precision="fp32")
    for name in SET14_LARGEST:
        x = to_batch(read_image(SHARED / f"datasets/Set14/LR_bicubic/X4/{name}x4.png"))
        up.tile = 0
        whole = quantize(up.upscale(x), 8)
        for tile in (64, 128):  # these LR images are at most 192x164: a larger tile is the whole image
            up.tile = tile
            worst, share = _worst(quantize(up.upscale(x), 8), whole)
            assert worst <= 1 and share < 1e-3, (name, tile, worst, share)
