"""Image I/O: bit depth, gray, alpha, palette, CMYK, EXIF orientation, ICC, corrupt files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageCms

from esr_cli import images
from esr_cli.errors import BadImage, EsrError
from esr_cli.images import from_planes, quantize, read_image, to_batch, write_image


def roundtrip(pic):
    """What the engine does with an identity network: to tensors and back."""
    return from_planes(pic, quantize(to_batch(pic), pic.bits))


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_rgb_survives(tmp_path, suffix):
    a = np.random.default_rng(0).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    write_image(tmp_path / f"in.{suffix}", images.Picture(a))
    pic = read_image(tmp_path / f"in.{suffix}")
    assert pic.bits == 16 and np.array_equal(pic.pixels, a)
    write_image(tmp_path / f"out.{suffix}", roundtrip(pic))
    assert np.array_equal(read_image(tmp_path / f"out.{suffix}").pixels, a)


def test_gray_stays_gray_and_16_bit_gray_too(tmp_path):
    g = np.random.default_rng(1).integers(0, 256, (7, 5), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    pic = read_image(tmp_path / "g.png")
    assert pic.gray and pic.bits == 8 and to_batch(pic).shape == (1, 3, 7, 5)
    write_image(tmp_path / "o.png", roundtrip(pic))
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L" and np.array_equal(np.asarray(out), g)
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    pic16 = read_image(tmp_path / "g16.png")
    assert pic16.gray and pic16.bits == 16


def test_alpha_is_kept_and_goes_through_the_batch(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.alpha is not None and to_batch(pic).shape[0] == 2
    write_image(tmp_path / "o.png", roundtrip(pic))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), rgba)
    write_image(tmp_path / "o.jpg", roundtrip(pic))  # JPEG has no alpha: flattened, not an error
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"


def test_palette_with_transparency_and_cmyk(tmp_path):
    p = Image.new("P", (4, 4))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    pic = read_image(tmp_path / "p.png")
    assert pic.pixels.shape == (4, 4, 3) and pic.alpha is not None and pic.alpha[0, 0] == 255 and pic.alpha[1, 1] == 0
    Image.new("CMYK", (5, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.pixels.shape == (3, 5, 3) and cmyk.pixels[..., 0].mean() > 200 and cmyk.pixels[..., 1].mean() < 60


def test_exif_orientation_is_applied_once(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = 255  # a marker in the stored top-left corner
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[images.ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "esr-test-camera"
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    pic = read_image(tmp_path / "o.jpg")
    assert pic.size == (4, 6) and pic.pixels[0, -1].mean() > 150
    write_image(tmp_path / "out.jpg", pic)
    saved = Image.open(tmp_path / "out.jpg").getexif()
    assert saved.get(images.ORIENTATION) == 1 and saved.get(0x010F) == "esr-test-camera"


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp", "tif"])
def test_icc_profile_is_carried(tmp_path, suffix):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "i.png", icc_profile=icc)
    pic = read_image(tmp_path / "i.png")
    write_image(tmp_path / f"o.{suffix}", pic)
    assert Image.open(tmp_path / f"o.{suffix}").info.get("icc_profile") == icc


def test_icc_profile_survives_16_bit_png(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pic = images.Picture(np.full((3, 3, 3), 1000, np.uint16), icc=icc)
    write_image(tmp_path / "o.png", pic)
    assert read_image(tmp_path / "o.png").icc == icc


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name, message in [("text.png", "not an image"), ("cut.png", "corrupt or truncated"), ("none.png", "no such file")]:
        with pytest.raises(BadImage, match=message):
            read_image(tmp_path / name)
    with pytest.raises(BadImage, match="max-pixels"):
        read_image(tmp_path / "ok.png", max_pixels=1000)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(images.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "o.png", images.Picture(np.zeros((2, 2, 3), np.uint8)))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EsrError, match="unknown output format"):
        write_image(tmp_path / "o.xyz", images.Picture(np.zeros((2, 2, 3), np.uint8)))
