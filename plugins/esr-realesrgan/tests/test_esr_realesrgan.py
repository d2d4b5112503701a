"""The Real-ESRGAN plugin: contract for `compact` and `esrgan`, configs read back from shapes, retyped references of
the authors' forwards, the release wrappers and the older ESRGAN key layouts, exact tiling on the unshuffle grid, and
`esr upscale` against the ncnn runtime's outputs in ../shared/realworld."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from esr_cli import Registry, check_architecture, default_registry, read_state_dict
from esr_cli.engine import Upscaler
from esr_cli.loaded import LoadedModel
from esr_cli.registry import Match, try_architecture
from esr_realesrgan import compact, esrgan
from esr_realesrgan.compact import CompactConfig
from esr_realesrgan.rrdbnet import RRDBNetConfig

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
REALWORLD = SHARED / "realworld"
SET5_LR = SHARED / "datasets" / "Set5" / "LR_bicubic" / "X4"
CONVERTED = {"realesr-general-x4v3": CompactConfig(convs=32), "realesr-animevideov3": CompactConfig(convs=16)}
ARCHS = (compact, esrgan)
SMALL = RRDBNetConfig(features=8, blocks=2, growth=4)


def everything() -> Registry:
    """Every installed architecture plus ours (installed or not), so detection is checked against all of them."""
    return Registry.of(*default_registry().architectures.values(), *ARCHS)


def random_state(arch, config, seed: int = 0) -> dict:
    """Random tensors, not the init's (whose PReLU slopes are all 0.25: a mix-up of layers would not show)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in arch.build(config).state_dict().items()}


def loaded(arch, config, state: dict) -> torch.nn.Module:
    module = arch.build(config).eval()
    module.load_state_dict(state, strict=True)
    return module


# ---- contract and configs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, everything())


@pytest.mark.parametrize("arch, config", [
    (compact, CompactConfig()), (compact, CompactConfig(convs=32)),
    (compact, CompactConfig(features=24, convs=3, scale=2)),
    (compact, CompactConfig(features=16, convs=1, scale=1)), (compact, CompactConfig(features=16, convs=5, scale=3)),
    (esrgan, RRDBNetConfig()), (esrgan, RRDBNetConfig(scale=2)), (esrgan, RRDBNetConfig(blocks=6)),
    (esrgan, dataclasses.replace(SMALL, scale=1)), (esrgan, dataclasses.replace(SMALL, features=12, growth=6)),
], ids=str)
def test_read_config_round_trip(arch, config):
    with torch.device("meta"):
        state = arch.build(config).state_dict()
    assert arch.read_config(state, None) == config
    assert everything().detect(state).config == config


@pytest.mark.parametrize("activation", ["relu", "leakyrelu"])
def test_compact_without_prelu_slopes_is_refused_with_the_reason(activation):
    """relu and leakyrelu leave no tensors: a file cannot tell which, so it is not guessed."""
    state = compact.build(CompactConfig(features=8, convs=2, activation=activation)).state_dict()
    result = try_architecture(compact, state, None)
    assert not isinstance(result, Match) and "relu and leakyrelu" in result[2]


@pytest.mark.parametrize("weights", [w for a in ARCHS for w in a.weights], ids=lambda w: w.name)
def test_declared_params_match_the_network(weights):
    configs = {"realesr-general-v3-x4": CompactConfig(convs=32), "realesr-general-wdn-v3-x4": CompactConfig(convs=32),
               "realesr-animevideov3-x4": CompactConfig(convs=16), "realesrgan-plus-x4": RRDBNetConfig(),
               "realesrgan-plus-x2": RRDBNetConfig(scale=2), "realesrgan-plus-anime-6b-x4": RRDBNetConfig(blocks=6)}
    arch = compact if isinstance(configs[weights.name], CompactConfig) else esrgan
    with torch.device("meta"):
        model = arch.build(configs[weights.name])
    assert sum(p.numel() for p in model.parameters()) == weights.params
    assert model.scale == weights.scale


def test_weights_names_and_sources():
    for w in (w for a in ARCHS for w in a.weights):
        assert w.url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.")
        assert w.license == "BSD-3-Clause" and w.reference_psnr is None and w.challenge is None


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_each_is_detected_only_as_itself(arch):
    other = next(a for a in ARCHS if a is not arch)
    state = arch.build(arch.config()).state_dict()
    assert everything().detect(state).architecture is arch
    assert not isinstance(try_architecture(other, state, None), Match)


def test_no_other_file_of_the_shared_zoo_is_claimed():
    files = sorted((SHARED / "zoo" / "weights").glob("*.pth"))
    if not files:
        pytest.skip(f"{SHARED / 'zoo' / 'weights'} is absent (needs the shared weights zoo)")
    for path in files:
        state = read_state_dict(path)
        for arch in ARCHS:
            assert not isinstance(try_architecture(arch, state, None), Match), f"{arch.name} claims {path.name}"


# ---- the authors' forwards, retyped over a state dict -----------------------------------------------------------

def reference_rrdbnet(sd: dict, x: torch.Tensor, scale: int, blocks: int) -> torch.Tensor:
    """BasicSR's RRDBNet.forward (pixel_unshuffle as basicsr.archs.arch_util writes it), with RealESRGANer's
    reflect mod-pad for x2/x1 and its crop."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    h, w = x.shape[-2:]
    r = {4: 1, 2: 2, 1: 4}[scale]
    if r > 1:
        x = F.pad(x, (0, (r - w % r) % r, 0, (r - h % r) % r), "reflect")
        b, c, hh, ww = x.shape
        x = x.view(b, c, hh // r, r, ww // r, r).permute(0, 1, 3, 5, 2, 4).reshape(b, c * r * r, hh // r, ww // r)
    feat = conv("conv_first", x)
    trunk = feat
    for i in range(blocks):
        rrdb_in = trunk
        for k in (1, 2, 3):
            p = f"body.{i}.rdb{k}"
            x0 = trunk
            x1 = lrelu(conv(f"{p}.conv1", x0))
            x2 = lrelu(conv(f"{p}.conv2", torch.cat((x0, x1), 1)))
            x3 = lrelu(conv(f"{p}.conv3", torch.cat((x0, x1, x2), 1)))
            x4 = lrelu(conv(f"{p}.conv4", torch.cat((x0, x1, x2, x3), 1)))
            trunk = conv(f"{p}.conv5", torch.cat((x0, x1, x2, x3, x4), 1)) * 0.2 + x0
        trunk = trunk * 0.2 + rrdb_in
    feat = feat + conv("conv_body", trunk)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))[..., : h * scale, : w * scale]


def reference_compact(sd: dict, x: torch.Tensor, scale: int, activation: str) -> torch.Tensor:
    """SRVGGNetCompact.forward: the body list in order, pixel shuffle, + the nearest-upsampled input."""
    convs = sorted(int(k.split(".")[1]) for k in sd if k.endswith(".bias"))
    out = x
    for i in convs:
        out = F.conv2d(out, sd[f"body.{i}.weight"], sd[f"body.{i}.bias"], padding=1)
        if i != convs[-1]:
            out = {"prelu": lambda t: F.prelu(t, sd[f"body.{i + 1}.weight"]), "relu": F.relu,
                   "leakyrelu": lambda t: F.leaky_relu(t, 0.1)}[activation](out)
    return F.pixel_shuffle(out, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("config", [SMALL, dataclasses.replace(SMALL, scale=2), dataclasses.replace(SMALL, scale=1),
                                    dataclasses.replace(SMALL, blocks=6)], ids=str)
def test_rrdbnet_equals_the_authors_forward(config):
    state = random_state(esrgan, config)
    x = torch.rand(1, 3, 19, 22)  # odd height: x2 and x1 pad
    with torch.inference_mode():
        assert torch.equal(loaded(esrgan, config, state)(x), reference_rrdbnet(state, x, config.scale, config.blocks))


@pytest.mark.parametrize("config", [CompactConfig(features=16, convs=3), CompactConfig(features=8, convs=2, scale=2),
                                    CompactConfig(features=8, convs=2, activation="relu", scale=3),
                                    CompactConfig(features=8, convs=2, activation="leakyrelu")], ids=str)
def test_compact_equals_the_authors_forward(config):
    state = random_state(compact, config)
    x = torch.rand(1, 3, 13, 10)
    with torch.inference_mode():
        ours = loaded(compact, config, state)(x)
        assert torch.equal(ours, reference_compact(state, x, config.scale, config.activation))


# ---- key layouts ------------------------------------------------------------------------------------------------

def to_original_esrgan(sd: dict, blocks: int) -> dict:
    """BasicSR's names -> the original ESRGAN release's nn.Sequential names (as xinntao/ESRGAN's
    transer_RRDB_models.py reads them)."""
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_up1": "model.3",
           "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, t in sd.items():
        parts = key.split(".")
        if parts[0] == "body":  # body.i.rdbK.convJ.weight -> model.1.sub.i.RDBK.convJ.0.weight
            key = f"model.1.sub.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.0.{parts[4]}"
        else:
            key = f"{top[parts[0]]}.{parts[1]}"
        out[key] = t
    return out


def to_old_arch(sd: dict, blocks: int) -> dict:
    """BasicSR's names -> xinntao/ESRGAN RRDBNet_arch.py's (RRDB_trunk, trunk_conv, upconv1/2, HRconv); `blocks`
    unused (these names carry no count)."""
    top = {"conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
           "conv_hr": "HRconv", "conv_last": "conv_last"}
    out = {}
    for key, t in sd.items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.{parts[4]}"
        else:
            key = f"{top[parts[0]]}.{parts[1]}"
        out[key] = t
    return out


@pytest.mark.parametrize("layout", [to_original_esrgan, to_old_arch], ids=lambda f: f.__name__)
def test_older_esrgan_layouts_convert_to_an_identical_network(layout):
    config = dataclasses.replace(SMALL, blocks=3)
    state = random_state(esrgan, config)
    old = layout(state, config.blocks)
    assert "body.0.rdb1.conv1.weight" not in old and "conv_body.weight" not in old
    match = everything().detect(old)
    assert match.architecture is esrgan and match.config == config
    x = torch.rand(1, 3, 12, 15)
    with torch.inference_mode():
        assert torch.equal(loaded(esrgan, config, dict(match.state_dict))(x), loaded(esrgan, config, state)(x))


@pytest.mark.parametrize("config", [RRDBNetConfig(), RRDBNetConfig(blocks=6)], ids=str)
@pytest.mark.parametrize("layout", [to_original_esrgan, to_old_arch], ids=lambda f: f.__name__)
def test_older_layouts_of_the_published_sizes_load_strictly(layout, config):
    """RRDB_ESRGAN_x4.pth (23 blocks; its trunk conv is model.1.sub.23) and 6-block files, shapes only."""
    with torch.device("meta"):
        state = esrgan.build(config).state_dict()
        old = layout(state, config.blocks)
        match = everything().detect(old)
        assert match.config == config
        esrgan.build(match.config).load_state_dict(dict(match.state_dict), strict=True)


def test_convert_leaves_other_layouts_alone():
    native = esrgan.build(SMALL).state_dict()
    assert esrgan.convert(native) is native


@pytest.mark.parametrize("wrapper", ["params_ema", "params"])
def test_release_wrappers_unwrap(tmp_path, wrapper):
    """The RRDBNet releases hold params_ema (used, as RealESRGANer prefers it) and params; the compact ones params."""
    for arch, config in ((esrgan, SMALL), (compact, CompactConfig(features=8, convs=2))):
        state = random_state(arch, config, seed=1)
        other = random_state(arch, config, seed=2)
        path = tmp_path / f"{arch.name}.pth"
        torch.save({wrapper: state, "params": other} if wrapper == "params_ema" else {"params": state}, path)
        match = everything().detect(read_state_dict(path))
        assert match.architecture is arch
        assert all(torch.equal(match.state_dict[k], v) for k, v in state.items())


# ---- tiling -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 2, 4])
def test_tiled_equals_whole_on_the_unshuffle_grid(scale):
    """No RRDB (a receptive field of about 13 pixels, which the overlap covers): tiles then reproduce the whole image,
    which they only do when every window starts on the pixel-unshuffle grid (with tile_grid=1 the x2 and x1 outputs
    differ by 0.35 and 0.75 here). Odd sizes: the last window pads as the whole image does."""
    config = RRDBNetConfig(features=8, blocks=0, growth=4, scale=scale)
    module = loaded(esrgan, config, random_state(esrgan, config))
    x = torch.rand(1, 3, 131, 117)
    whole = Upscaler(LoadedModel(module, esrgan, config)).upscale(x)
    tiled = Upscaler(LoadedModel(module, esrgan, config), tile=24, tile_overlap=28).upscale(x)
    assert torch.allclose(tiled, whole, atol=1e-5)


# ---- the authors' tensors (from ncnn) against the ncnn runtime ---------------------------------------------------

def needs_realworld():
    if not (REALWORLD / "converted").is_dir() or not SET5_LR.is_dir():
        pytest.skip(f"{REALWORLD} or {SET5_LR} is absent (needs the shared Real-ESRGAN reference material)")


@pytest.mark.parametrize("model", CONVERTED)
def test_converted_file_is_detected_and_loads_strictly(model):
    needs_realworld()
    match = everything().detect(read_state_dict(REALWORLD / "converted" / f"{model}.from-ncnn.pth"))
    assert match.architecture is compact and match.config == CONVERTED[model]
    compact.build(match.config).load_state_dict(dict(match.state_dict), strict=True)


@pytest.mark.slow  # 8 images x 2 models x 2 tilings through the CLI: about 10 s of CPU
@pytest.mark.parametrize("tile", ["0", "64"])
@pytest.mark.parametrize("model", CONVERTED)
def test_esr_upscale_reproduces_the_ncnn_outputs(tmp_path, model, tile):
    """`esr upscale` on the 5 Set5 LR x4 images and the 3 JPEGs: within 2 levels, on < 0.1 % of the pixels."""
    needs_realworld()
    from typer.testing import CliRunner

    from esr_cli.cli import app

    inputs = sorted(SET5_LR.glob("*.png")) + sorted((REALWORLD / "inputs").glob("*.jpg"))
    assert len(inputs) == 8
    result = CliRunner().invoke(app, ["upscale", *map(str, inputs), "-o", str(tmp_path), "-m",
                                      str(REALWORLD / "converted" / f"{model}.from-ncnn.pth"), "--tile", tile,
                                      "--precision", "fp32", "--device", "cpu", "--name", "{stem}.png", "-q"])
    assert result.exit_code == 0, result.output
    for path in inputs:
        ours = np.asarray(Image.open(tmp_path / f"{path.stem}.png"), dtype=np.int16)
        ncnn = np.asarray(Image.open(REALWORLD / "reference" / model / f"{path.stem}.png"), dtype=np.int16)
        assert ours.shape == ncnn.shape
        diff = np.abs(ours - ncnn)
        assert diff.max() <= 2, f"{path.stem}: {diff.max()} levels"
        assert (diff.max(-1) > 0).mean() < 0.001, f"{path.stem}: {100 * (diff.max(-1) > 0).mean():.3f}% of pixels"
