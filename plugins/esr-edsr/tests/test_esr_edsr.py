"""EDSR / MDSR plugin: the authors' exact key layout, parameter counts, MDSR branch choice and the contract check."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import esr_cli
from esr_cli import check_architecture
from esr_edsr import EDSRConfig, MDSRConfig, edsr, mdsr

TINY_EDSR = EDSRConfig(n_resblocks=2, n_feats=16, res_scale=1.0)
TINY_MDSR = MDSRConfig(n_resblocks=2, n_feats=16)
BASELINE = EDSRConfig(n_resblocks=16, n_feats=64, res_scale=1.0)


def shapes(arch, config) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in arch.build(config).state_dict().items()}


def conv_keys(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias"]


def test_edsr_baseline_x2_keys_are_the_authors():
    """EDSR-PyTorch src/model/edsr.py: sub_mean/add_mean, head, body.N.body.{0,2} + body.16, tail (Upsampler, conv)."""
    expected = conv_keys("sub_mean") + conv_keys("add_mean") + conv_keys("head.0")
    for i in range(16):
        expected += conv_keys(f"body.{i}.body.0") + conv_keys(f"body.{i}.body.2")
    expected += conv_keys("body.16") + conv_keys("tail.0.0") + conv_keys("tail.1")
    got = shapes(edsr, dataclasses.replace(BASELINE, scale=2))
    assert sorted(got) == sorted(expected)
    assert got["sub_mean.weight"] == (3, 3, 1, 1)
    assert got["tail.0.0.weight"] == (256, 64, 3, 3)
    assert got["tail.1.weight"] == (3, 64, 3, 3)


@pytest.mark.parametrize("scale, tail", [(3, {"tail.0.0.weight": (576, 64, 3, 3)}),
                                         (4, {"tail.0.0.weight": (256, 64, 3, 3), "tail.0.2.weight": (256, 64, 3, 3)})])
def test_edsr_upsampler_convs(scale, tail):
    got = shapes(edsr, dataclasses.replace(BASELINE, scale=scale))
    assert {k: v for k, v in got.items() if k.startswith("tail.0.") and k.endswith("weight")} == tail


def test_mdsr_baseline_keys_are_the_authors():
    """EDSR-PyTorch src/model/mdsr.py: pre_process.{branch}.{0,1} (5x5 ResBlocks), upsample.{branch}, one tail conv."""
    got = shapes(mdsr, MDSRConfig(n_resblocks=16))
    assert got["pre_process.2.1.body.2.weight"] == (64, 64, 5, 5)
    assert got["upsample.0.0.weight"] == (256, 64, 3, 3)
    assert got["upsample.1.0.weight"] == (576, 64, 3, 3)
    assert got["upsample.2.2.weight"] == (256, 64, 3, 3)
    assert got["body.16.weight"] == (64, 64, 3, 3)
    assert got["tail.0.weight"] == (3, 64, 3, 3)
    outside_body = sorted(k for k in got if not k.startswith(("body.", "pre_process.")))
    assert outside_body == sorted(conv_keys("sub_mean") + conv_keys("add_mean") + conv_keys("head.0")
                                  + conv_keys("upsample.0.0") + conv_keys("upsample.1.0") + conv_keys("upsample.2.0")
                                  + conv_keys("upsample.2.2") + conv_keys("tail.0"))
    assert len([k for k in got if k.startswith("pre_process.")]) == 3 * 2 * 4


def test_mean_shift_is_div2k_mean_at_255():
    model = edsr.build(TINY_EDSR)
    mean = 255 * torch.tensor((0.4488, 0.4371, 0.4040))
    torch.testing.assert_close(model.sub_mean.bias, -mean)
    torch.testing.assert_close(model.add_mean.bias, mean)
    torch.testing.assert_close(model.sub_mean.weight.flatten(1), torch.eye(3))
    assert edsr.input_range == mdsr.input_range == 255.0


def test_params_match_checkpoint_counts():
    """Weights.params counts every checkpoint tensor, the MeanShift convs included (24 elements)."""
    for arch, config in [(edsr, BASELINE), (mdsr, MDSRConfig(n_resblocks=16))]:
        for w in arch.weights:
            counted = sum(torch.Size(s).numel() for s in shapes(arch, dataclasses.replace(config, scale=w.scale)).values())
            assert counted == w.params, w.name
    params = {w.scale: w.params for w in edsr.weights}
    assert params[2] - 24 == 1_369_859  # the usual EDSR-baseline x2 figure
    assert [round(params[s], -3) // 1000 for s in (2, 3, 4)] == [1370, 1555, 1518]  # SAFMN table


def test_res_scale_is_tied_to_width():
    wide = shapes(edsr, EDSRConfig(scale=2, n_resblocks=2))
    state = {k: torch.empty(v, device="meta") for k, v in wide.items()}
    assert edsr.read_config(state, None) == EDSRConfig(scale=2, n_resblocks=2, n_feats=256, res_scale=0.1)
    base = {k: torch.empty(v, device="meta") for k, v in shapes(edsr, BASELINE).items()}
    assert edsr.read_config(base, None) == BASELINE


def test_mdsr_scale_picks_the_branch():
    torch.manual_seed(0)
    state = mdsr.build(TINY_MDSR).state_dict()
    x = torch.rand(1, 3, 8, 10) * 255
    sizes = set()
    for scale in (2, 3, 4):
        config = mdsr.read_config(state, scale)
        assert config.scale == scale
        model = mdsr.build(config).eval()
        model.load_state_dict(state, strict=True)
        with torch.inference_mode():
            sizes.add(tuple(model(x).shape[-2:]))
    assert sizes == {(16, 20), (24, 30), (32, 40)}
    assert mdsr.read_config(state, None).scale == 4
    with pytest.raises(ValueError):
        mdsr.read_config(state, 8)


def test_weights_entries():
    assert [w.name for w in edsr.weights] == ["edsr-baseline-x2", "edsr-baseline-x3", "edsr-baseline-x4"]
    assert [w.name for w in mdsr.weights] == ["mdsr-baseline-x2", "mdsr-baseline-x3", "mdsr-baseline-x4"]
    assert len({(w.url, w.sha256) for w in mdsr.weights}) == 1
    assert all(w.url.split("-")[-1][:8] == w.sha256[:8] for w in edsr.weights + mdsr.weights)
    assert all(w.license == "MIT" and w.reference_psnr is None for w in edsr.weights + mdsr.weights)


@pytest.mark.parametrize("arch, config", [(edsr, TINY_EDSR), (mdsr, TINY_MDSR), (edsr, BASELINE)])
def test_contract_small(arch, config):
    check_architecture(arch, esr_cli.Registry.of(arch), config=config)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [edsr, mdsr])
def test_contract_paper_models_among_installed(arch):
    """The paper's EDSR (32x256) and MDSR (80x64), detected among every installed architecture."""
    check_architecture(arch)
