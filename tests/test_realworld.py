"""Real-ESRGAN's second-order degradations (esr_cli.realworld): each operation, the pipeline, the data hook."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esr_cli import Registry, read_state_dict
from esr_cli.data import PatchDataset, PatchSpec
from esr_cli.datasets import load_dataset
from esr_cli.degradations import Degradations, describe
from esr_cli.errors import EsrError
from esr_cli.metrics import gaussian_window
from esr_cli.degradations import filter2d
from esr_cli.realworld import (KERNEL_PAD, KERNELS, RealWorld, Stage, add_noise, pad_kernel, random_kernel,
                               shaped_kernel, sinc_kernel, usm_sharpen, write_pairs)
from esr_cli.recipes import load_recipe
from esr_cli.training import run

from tiny import tiny

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "finetune_realworld.toml"


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photo(size=(64, 48), seed=0) -> torch.Tensor:
    """A smooth pattern with one sharp edge, (3, H, W) in [0, 1] on 8-bit levels."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.5 + 0.3 * np.sin(2 * np.pi * (rng.uniform(1, 3) * x + rng.uniform(1, 3) * y)) for _ in range(3)]
    img = np.stack(planes) + 0.15 * (x > 0.5)[None]
    return torch.from_numpy((np.clip(img, 0, 1) * 255).round() / 255).float()


def test_kernels_sum_to_one_and_have_their_shape():
    for shape, beta in (("gaussian", 1.0), ("generalized", 0.7), ("generalized", 3.0), ("plateau", 1.5)):
        k = shaped_kernel(15, 2.5, 1.0, 0.6, shape, beta)
        assert k.shape == (15, 15) and math.isclose(float(k.sum()), 1, abs_tol=1e-12) and (k >= 0).all()
        assert torch.allclose(k, k.flip(0, 1))  # point-symmetric
    # the isotropic case of the quadratic form is the one Gaussian of the code base, and theta rotates
    assert torch.allclose(shaped_kernel(11, 1.7, 1.7, 0.3), gaussian_window(11, 1.7), atol=1e-15)
    assert torch.allclose(shaped_kernel(13, 3.0, 1.0, math.pi / 2), shaped_kernel(13, 1.0, 3.0, 0.0), atol=1e-12)
    assert torch.allclose(shaped_kernel(13, 2.0, 2.0, 0.0, "generalized", 1.0), gaussian_window(13, 2.0), atol=1e-15)
    sinc = sinc_kernel(math.pi / 4, 21)
    assert math.isclose(float(sinc.sum()), 1, abs_tol=1e-12) and (sinc < 0).any() and torch.allclose(sinc, sinc.T)
    assert pad_kernel(gaussian_window(7, 1.0)).shape == (KERNEL_PAD, KERNEL_PAD)


@pytest.mark.parametrize("kind", KERNELS)
def test_each_kernel_family_draws_a_normalised_kernel(kind):
    stage = Stage(kernel_list=(kind,), kernel_prob=(1.0,), sinc_prob=0.0)
    for seed in range(5):
        k = RealWorld.kernel(stage, g(seed))
        assert k.shape == (KERNEL_PAD, KERNEL_PAD) and math.isclose(float(k.sum()), 1, abs_tol=1e-9)
        if kind.endswith("_iso") or kind == "iso":
            assert torch.allclose(k, k.T)  # no rotation, equal sigmas
    assert torch.equal(random_kernel(stage, 9, g(3)), random_kernel(stage, 9, g(3)))


def test_sinc_probability_one_gives_ringing_kernels():
    stage = Stage(sinc_prob=1.0)
    assert all((RealWorld.kernel(stage, g(s)) < 0).any() for s in range(5))
    assert not any((RealWorld.kernel(Stage(sinc_prob=0.0), g(s)) < 0).any() for s in range(5))


def test_filter_keeps_flat_images_and_shapes():
    flat = torch.full((3, 30, 20), 0.4)
    out = filter2d(flat, pad_kernel(shaped_kernel(9, 2.0, 0.5, 1.0)))
    assert out.shape == flat.shape and torch.allclose(out, flat, atol=1e-6)
    assert filter2d(torch.rand(3, 5, 6), pad_kernel(gaussian_window(7, 1.0))).shape == (3, 5, 6)  # tiny: replicate


def test_resize_directions_are_honoured():
    x = photo()
    for probs, check in (((1, 0, 0), lambda h: h >= 64), ((0, 1, 0), lambda h: h <= 64), ((0, 0, 1), lambda h: h == 64)):
        stage = Stage(resize_prob=probs)
        assert all(check(RealWorld.resize(x, stage, (64, 48), g(s)).shape[-2]) for s in range(6))


def test_noise_colour_gray_and_off():
    x = torch.full((3, 40, 40), 0.5)
    gray = add_noise(x, Stage(gaussian_noise_prob=1.0, gray_noise_prob=1.0, noise_range=(10, 10)), g())
    colour = add_noise(x, Stage(gaussian_noise_prob=1.0, gray_noise_prob=0.0, noise_range=(10, 10)), g())
    assert torch.equal(gray[0], gray[1]) and not torch.equal(colour[0], colour[1])
    assert math.isclose(float((colour - x).std()), 10 / 255, rel_tol=0.1)
    poisson = add_noise(photo(), Stage(gaussian_noise_prob=0.0, poisson_scale_range=(1, 1), gray_noise_prob=0.0), g())
    assert 0 < float((poisson - photo()).abs().mean()) < 0.1
    assert torch.equal(add_noise(photo(), Stage(gaussian_noise_prob=0.0, poisson_scale_range=(0, 0)), g()), photo())
    assert torch.equal(add_noise(x, Stage(gaussian_noise_prob=1.0, noise_range=(0, 0)), g()), x)


def test_usm_sharpens_edges_and_keeps_flat_areas():
    flat = torch.full((3, 60, 60), 0.3)
    assert torch.allclose(usm_sharpen(flat), flat, atol=1e-6)
    step = torch.zeros(3, 60, 60)
    step[:, :, 30:] = 0.6
    sharp = usm_sharpen(step + 0.2)
    assert sharp[:, 30, 31].min() > 0.8 and sharp[:, 30, 28].max() < 0.2  # overshoot either side of the edge


def test_pipeline_shapes_levels_and_seeds():
    rw = RealWorld(usm=False)
    hr = photo((96, 64))
    lr, target = rw.pair(hr, 4, g(5))
    assert lr.shape == (3, 24, 16) and torch.equal(target, hr)
    assert torch.equal(lr, (lr * 255).round() / 255) and 0 <= lr.min() and lr.max() <= 1
    assert torch.equal(lr, rw.pair(hr, 4, g(5))[0])
    assert not torch.equal(lr, rw.pair(hr, 4, g(6))[0])
    _, sharpened = RealWorld().pair(hr, 4, g(5))
    assert torch.equal(sharpened, usm_sharpen(hr))


def test_probabilities_zero_leave_only_the_resize():
    """Blur, sinc, noise off and JPEG at quality 100: the LR is close to a plain downscale."""
    quiet = dict(blur_prob=0.0, resize_prob=(0, 0, 1), noise_range=(0, 0), gaussian_noise_prob=1.0,
                 jpeg_range=(100, 100))
    rw = RealWorld(first=Stage(**quiet), second=Stage(**quiet), final_sinc_prob=0.0, usm=False)
    hr = photo((96, 64))
    lr, _ = rw.pair(hr, 4, g())
    area = torch.nn.functional.interpolate(hr[None], size=(24, 16), mode="area")[0]
    assert float((lr - area).abs().mean()) < 0.05  # mostly JPEG's 4:2:0 chroma on a 24x16 image (0.039 alone)
    blurred = RealWorld(first=Stage(**{**quiet, "blur_prob": 1.0, "blur_sigma": (3, 3), "sinc_prob": 0.0}),
                        second=Stage(**quiet), final_sinc_prob=0.0, usm=False).pair(hr, 4, g())[0]
    assert float((blurred - area).abs().mean()) > float((lr - area).abs().mean())


def test_table_unknown_keys_and_recipe():
    with pytest.raises(EsrError, match=r"unknown key\(s\) nosie"):
        Degradations.from_table({"pipeline": "realworld", "nosie": 1})
    with pytest.raises(EsrError, match=r"\[degrade.second\]: unknown key\(s\) blur"):
        Degradations.from_table({"pipeline": "realworld", "second": {"blur": 1}})
    with pytest.raises(EsrError, match="only pipeline"):
        Degradations.from_table({"pipeline": "esrgan"})
    with pytest.raises(EsrError, match="kernel_prob"):
        Degradations.from_table({"pipeline": "realworld", "first": {"kernel_list": ["iso"]}})
    recipe = load_recipe(RECIPE)
    rw = Degradations.from_table(recipe["degrade"])
    assert isinstance(rw, RealWorld) and rw == RealWorld(usm=False)  # the recipe writes out the defaults
    assert "realworld" in describe(rw)
    with pytest.raises(EsrError, match="val.degrade = false"):
        rw(torch.rand(3, 8, 8), g())


def test_dataset_makes_lr_from_hr(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((photo((80, 80), i) * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    spec = PatchSpec(scale=4, patch=64)
    data = PatchDataset([folder], spec, degrade=RealWorld(usm=False))
    lr, hr = data.collate([data[0], data[1]])
    assert lr.shape == (2, 3, 16, 16) and hr.shape == (2, 3, 64, 64)
    assert torch.equal(data.sample(1)[0], data.sample(1)[0])
    sharp_lr, sharp_hr = PatchDataset([folder], spec, degrade=RealWorld()).sample(1)
    assert torch.equal(sharp_hr[0], usm_sharpen(data.sample(1)[1][0]))
    with pytest.raises(EsrError, match="drop data.lr"):
        PatchDataset([folder], spec, lr_folders=[folder], degrade=RealWorld())


def test_write_pairs_is_an_evaluation_folder(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((photo((50, 41), i) * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    write_pairs(sorted(folder.iterdir()), tmp_path / "val", RealWorld(usm=False), 4, seed=1)
    dataset = load_dataset(tmp_path / "val", 4)
    assert len(dataset.pairs) == 2 and Image.open(tmp_path / "val" / "LR" / "0.png").size == (10, 12)  # 41x50 cropped to 40x48
    before = (tmp_path / "val" / "LR" / "1.png").read_bytes()
    write_pairs(sorted(folder.iterdir()), tmp_path / "val", RealWorld(usm=False), 4, seed=1)
    assert (tmp_path / "val" / "LR" / "1.png").read_bytes() == before  # fixed seed: the same held-out set


def test_training_run_with_the_realworld_pipeline(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((photo((48, 48), i) * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    write_pairs(sorted(folder.iterdir()), tmp_path / "val", RealWorld(usm=False), 2)
    recipe = load_recipe(RECIPE, ["model.arch='tiny'", "model.scale=2", f"data.train=['{folder}']", "data.patch=32",
                                  "data.batch=2", "data.workers=0", "train.iters=4", "train.log_every=2",
                                  "train.checkpoint_every=4", f"val.folder='{tmp_path / 'val'}'", "val.every=4"])
    registry = Registry.of(dataclasses.replace(tiny))
    weights = run(recipe, tmp_path / "run", registry=registry)
    assert registry.detect(read_state_dict(weights)).architecture.name == "tiny"
    assert "val_psnr" in (tmp_path / "run" / "log.csv").read_text()
