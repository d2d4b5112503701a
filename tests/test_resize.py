"""MATLAB-compatible bicubic resize: kernel weights, shapes, and the official benchmark LR images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from esr_cli.resize import bicubic_downscale, contributions, imresize

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


def test_upscale_weights_are_matlabs():
    indices, weights = contributions(in_length=8, out_length=16, scale=2.0)
    # first output pixel: centre at 0.75 in 1-based input coordinates, mirrored at the left edge
    assert weights[0].tolist() == [0.0, -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0.0]
    assert indices[0].tolist() == [2, 1, 0, 0, 1, 2]
    assert torch.allclose(weights.sum(dim=1), torch.ones(16, dtype=torch.float64))


def test_downscale_widens_the_kernel():
    _, weights = contributions(in_length=16, out_length=4, scale=0.25)
    assert weights.shape == (4, 18)  # ceil(4 / 0.25) + 2 taps


def test_shapes_and_constant_image():
    x = torch.full((2, 3, 12, 9), 0.3, dtype=torch.float64)
    assert torch.allclose(imresize(x, 1 / 3), torch.full((2, 3, 4, 3), 0.3, dtype=torch.float64))
    assert imresize(x, 2.5).shape == (2, 3, 30, 23)
    assert imresize(x[0], size=(5, 7)).shape == (3, 5, 7)
    assert imresize(x.float(), 0.5).dtype == torch.float32


def test_downscale_then_upscale_is_close_on_smooth_images():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    x = torch.sin(3 * xx + 2 * yy)[None, None].double()
    back = imresize(imresize(x, 0.5), 2.0)
    assert (back - x)[..., 4:-4, 4:-4].abs().max() < 2e-3


def test_uint8_is_rounded_and_clipped():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    x[..., 4:] = 255  # a hard edge: bicubic overshoots, uint8 clips
    out = imresize(x, 2.0)
    assert out.dtype == torch.uint8 and out.shape == (1, 1, 16, 16)
    assert out.min() == 0 and out.max() == 255


def _official_pairs(dataset: str, s: int):
    from PIL import Image

    for hr_path in sorted((DATASETS / dataset / "HR").glob("*.png")):
        hr = np.atleast_3d(np.asarray(Image.open(hr_path)))
        lr_path = DATASETS / dataset / "LR_bicubic" / f"X{s}" / f"{hr_path.stem}x{s}.png"
        lr = np.atleast_3d(np.asarray(Image.open(lr_path)))
        yield torch.from_numpy(hr.copy()).permute(2, 0, 1), torch.from_numpy(lr.copy()).permute(2, 0, 1)


@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} (shared benchmark images) is absent")
@pytest.mark.parametrize("dataset", ["Set5", pytest.param("Set14", marks=pytest.mark.slow)])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_matches_the_official_lr_images(dataset, s):
    diffs = []
    for hr, lr in _official_pairs(dataset, s):
        ours = bicubic_downscale(hr, s)
        assert ours.shape == lr.shape
        diffs.append((ours.int() - lr.int()).abs().flatten())
    d = torch.cat(diffs)
    assert (d <= 1).float().mean() >= 0.99
    assert d.max() <= 2
    assert d.max() == 0  # measured: bit-exact on Set5 and Set14 X2-X4 (MATLAB's uint8 path)
