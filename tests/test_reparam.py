"""Re-parameterisable blocks: each block's fused conv equals it, expand/fuse_modules keep the deploy layout, and a
SPAN trained with `model.reparam = true` by `esr train` writes a fused model.pth detected as span, same output."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from esr_cli import default_registry, read_state_dict, reparam
from esr_cli.errors import EsrError
from esr_cli.recipes import load_recipe
from esr_cli.training import Trainer


def randomised(block: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
    return block


@pytest.mark.parametrize("make", [lambda: reparam.Conv3XC(4, 6), lambda: reparam.Conv3XC(5, 5, gain=1),
                                  lambda: reparam.ECB(3, 8), lambda: reparam.ECB(6, 6, depth_multiplier=1)],
                         ids=["conv3xc", "conv3xc-gain1", "ecb", "ecb-dm1"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_block_fuses_to_one_conv(make, dtype):
    block = randomised(make()).to(dtype)
    conv = block.fuse()
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.weight.dtype == dtype
    x = torch.randn(2, conv.in_channels, 9, 11, dtype=dtype)
    with torch.no_grad():
        y = block(x)
        error = (conv(x) - y).abs().max() / y.abs().max()
    assert error <= (1e-12 if dtype == torch.float64 else 1e-5)


def test_every_branch_counts():
    """A change in any branch changes the fused kernel (no branch left out of `kernel`)."""
    block = randomised(reparam.ECB(3, 4))
    before = block.fuse().weight.clone()
    for branch in (block.sobel_x, block.sobel_y, block.laplacian):
        with torch.no_grad():
            branch.scale.mul_(2)
        after = block.fuse().weight
        assert not torch.allclose(before, after)
        before = after.clone()


def test_expand_and_fuse_modules_keep_the_layout():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 3, 3, padding=1))
    layout = {k: v.shape for k, v in net.state_dict().items()}
    reparam.expand(net, reparam.ECB, lambda name, conv: name != "3")
    assert isinstance(net[0], reparam.ECB) and isinstance(net[2], nn.Conv2d) and isinstance(net[3], nn.Conv2d)
    randomised(net).double()
    x = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
        deploy = reparam.fused(net)
        assert deploy is not net and isinstance(net[0], reparam.ECB)  # the training network is left as it was
        assert {k: v.shape for k, v in deploy.state_dict().items()} == layout
        assert torch.allclose(deploy(x), y, rtol=0, atol=1e-12)


# ---- SPAN trained with Conv3XC by esr train --------------------------------------------------------

needs_span = pytest.mark.skipif(importlib.util.find_spec("esr_span") is None,
                                reason="the esr-span plugin is not installed")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    for i in range(2):
        y, x = np.mgrid[0:32, 0:32] / 32
        planes = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y)) for _ in range(3)]
        Image.fromarray((np.stack(planes, -1) * 255).round().astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


@needs_span
def test_span_trained_with_reparam_is_fused_and_detected_as_span(tmp_path, images):
    import esr_span
    import typer

    from esr_cli.commands.train import train

    recipe = tmp_path / "span.toml"
    recipe.write_text(f'name = "span-rep"\n[model]\narch = "span"\nscale = 2\nreparam = true\n'
                      f'config = {{ channels = 8, blocks = 2 }}\n[data]\ntrain = ["{images}"]\npatch = 16\n'
                      f'batch = 2\nworkers = 0\n[train]\niters = 3\nlog_every = 1\nema = 0.5\n'
                      f'[val]\nfolder = "{images}"\nevery = 3\n')
    app = typer.Typer()
    app.command("train")(train)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["train", "-c", str(recipe), "-o", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert any(".sk." in k for k in state["ema"])  # trained as Conv3XC blocks
    config = esr_span.SPANConfig(channels=8, blocks=2, scale=2)
    trained = esr_span.span.train_build(config)
    trained.load_state_dict(state["ema"])
    x = torch.rand(1, 3, 12, 14)
    for name in ("model.pth", "best.pth"):
        sd = read_state_dict(tmp_path / "run" / name)
        match = default_registry().detect(sd)
        assert match.architecture.name == "span" and match.config == config
        deploy = esr_span.span.build(config)
        deploy.load_state_dict(dict(sd), strict=True)
        with torch.no_grad():
            expected = trained.eval()(x)
            assert (deploy.eval()(x) - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))


@needs_span
def test_reparam_needs_a_training_variant_and_no_init(images):
    base = ["model.scale=2", f"data.train=['{images}']", "train.device='cpu'"]
    with pytest.raises(EsrError, match="declares no training-time variant"):
        Trainer(load_recipe(None, ["model.arch='spanf'", "model.reparam=true", *base]))
    with pytest.raises(EsrError, match="leave model.init empty"):
        Trainer(load_recipe(None, ["model.arch='span'", "model.reparam=true", "model.init='x.pth'", *base]))
