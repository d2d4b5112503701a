"""Network interpolation (`esr models interpolate`) and `--denoise` (a model blended with its denoise partner)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from esr_cli import Weights, registry, zoo
from esr_cli.checkpoint import read_state_dict, sha256_of
from esr_cli.cli import app
from esr_cli.errors import EsrError
from esr_cli.interpolation import blend, interpolate, save_state_dict
from esr_cli.models import load_model
from esr_cli.registry import Registry

from tiny import TinyNet, tiny, tiny_weights


def entry(name: str, path, partner: str | None = None) -> Weights:
    return Weights(name=name, scale=2, url=f"https://example.invalid/{name}.pth", sha256=sha256_of(path),
                   license="MIT", source="test", params=0, denoise_partner=partner)


@pytest.fixture
def zoo_pair(tmp_path, monkeypatch):
    """A registry whose `tiny-x2` (seed 0) has the denoise partner `tiny-wdn-x2` (seed 1), both in the cache."""
    monkeypatch.setenv("ESR_CACHE", str(tmp_path / "cache"))
    tiny_weights(tmp_path / "a.pth", seed=0)
    tiny_weights(tmp_path / "b.pth", seed=1)
    weights = (entry("tiny-x2", tmp_path / "a.pth", partner="tiny-wdn-x2"), entry("tiny-wdn-x2", tmp_path / "b.pth"))
    for w, file in zip(weights, ("a.pth", "b.pth")):
        zoo.cached_path(w).parent.mkdir(parents=True)
        zoo.cached_path(w).write_bytes((tmp_path / file).read_bytes())
    reg = Registry.of(dataclasses.replace(tiny, weights=weights))
    monkeypatch.setattr(registry, "default_registry", lambda: reg)
    return reg, tmp_path / "a.pth", tmp_path / "b.pth"


def outputs(upscaler, x):
    with torch.no_grad():
        return upscaler.upscale(x)


def test_blend_endpoints_mean_and_integer_tensors():
    a = {"w": torch.randn(4, 3), "n": torch.tensor(7)}
    b = {"w": torch.randn(4, 3), "n": torch.tensor(9)}
    assert torch.equal(blend(a, b, 1.0)["w"], a["w"]) and torch.equal(blend(a, b, 0.0)["w"], b["w"])
    assert torch.allclose(blend(a, b, 0.5)["w"], (a["w"] + b["w"]) / 2, atol=0, rtol=1e-7)
    assert torch.allclose(blend(a, b, 0.25)["w"], 0.25 * a["w"] + 0.75 * b["w"])
    assert int(blend(a, b, 0.0)["n"]) == 7  # not float: copied from A
    with pytest.raises(EsrError, match="shapes differ"):
        blend(a, {"w": torch.randn(3, 4), "n": b["n"]}, 0.5)


def test_interpolate_files_and_refuse_other_config(tmp_path):
    reg = Registry.of(tiny)
    a, b = tiny_weights(tmp_path / "a.pth", seed=0), tiny_weights(tmp_path / "b.pth", seed=1)
    match = interpolate(tmp_path / "a.pth", tmp_path / "b.pth", 0.5, registry=reg)
    for key, tensor in match.state_dict.items():
        assert torch.equal(tensor, 0.5 * a.state_dict()[key] + 0.5 * b.state_dict()[key])
    torch.save(TinyNet(channels=4).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(EsrError, match="configs differ"):
        interpolate(tmp_path / "a.pth", tmp_path / "narrow.pth", 0.5, registry=reg)


def test_written_file_loads_by_detection(tmp_path):
    reg = Registry.of(tiny)
    tiny_weights(tmp_path / "a.pth", seed=0)
    tiny_weights(tmp_path / "b.pth", seed=1)
    match = interpolate(tmp_path / "a.pth", tmp_path / "b.pth", 0.3, registry=reg)
    x = torch.rand(1, 3, 12, 10)
    results = []
    for name in ("mix.pth", "mix.safetensors"):
        save_state_dict(match.state_dict, tmp_path / name)
        assert read_state_dict(tmp_path / name).keys() == match.state_dict.keys()
        results.append(outputs(load_model(tmp_path / name, registry=reg, device="cpu", precision="fp32", tile=0), x))
    net = TinyNet()
    net.load_state_dict(match.state_dict)
    with torch.no_grad():
        expected = net(x).clamp(0, 1)
    assert torch.allclose(results[0], expected, atol=1e-6) and torch.equal(results[0], results[1])


def test_denoise_endpoints_and_midpoint(zoo_pair, tmp_path):
    reg, a, b = zoo_pair
    x = torch.rand(1, 3, 16, 12)

    def run(ref, **kw):
        return outputs(load_model(ref, registry=reg, device="cpu", precision="fp32", tile=0, **kw), x)

    assert torch.equal(run("tiny-x2", denoise=1.0), run(a))
    assert torch.equal(run("tiny-x2", denoise=0.0), run(b))
    mean = blend(read_state_dict(a), read_state_dict(b), 0.5)
    save_state_dict(mean, tmp_path / "mean.pth")
    assert torch.equal(run("tiny-x2", denoise=0.5), run(tmp_path / "mean.pth"))
    assert not torch.equal(run("tiny-x2", denoise=0.5), run(a))
    assert torch.equal(run(a, denoise=0.5), run("tiny-x2", denoise=0.5))  # the zoo file by its sha256
    with pytest.raises(EsrError, match="no denoise partner .*tiny-x2"):
        load_model("tiny-wdn-x2", registry=reg, denoise=0.5)


def test_cli_interpolate_then_upscale_equals_denoise(zoo_pair, tmp_path):
    _, a, b = zoo_pair
    Image.fromarray((np.random.default_rng(0).random((14, 18, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    runner = CliRunner()
    mixed = tmp_path / "mix.safetensors"
    result = runner.invoke(app, ["models", "interpolate", str(a), str(b), "--alpha", "0.5", "-o", str(mixed)])
    assert result.exit_code == 0, result.output
    common = ["upscale", str(tmp_path / "in.png"), "--device", "cpu", "--precision", "fp32", "--tile", "0", "-q"]
    result = runner.invoke(app, [*common, "-m", str(mixed), "-o", str(tmp_path / "file")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*common, "-m", "tiny-x2", "--denoise", "0.5", "-o", str(tmp_path / "dn")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "file" / "in_x2.png")),
                          np.asarray(Image.open(tmp_path / "dn" / "in_x2.png")))


def test_cli_refusals(zoo_pair, tmp_path):
    _, a, b = zoo_pair
    runner = CliRunner()
    result = runner.invoke(app, ["upscale", str(tmp_path / "x.png"), "-m", "tiny-wdn-x2", "--denoise", "0.5"])
    assert result.exit_code == 2 and "--denoise" in result.output and "tiny-x2" in result.output
    result = runner.invoke(app, ["upscale", str(tmp_path / "x.png"), "-m", "tiny-x2", "--denoise", "1.5"])
    assert result.exit_code == 2 and "--denoise" in result.output
    result = runner.invoke(app, ["models", "interpolate", str(a), str(b), "--alpha", "0.5", "-o", "m.onnx"])
    assert result.exit_code == 2 and "-o" in result.output


def test_realesrgan_general_declares_its_wdn_partner():
    from esr_cli.registry import Registry as Installed

    reg = Installed.from_entry_points()
    if "compact" not in reg.architectures:
        pytest.skip("esr-realesrgan is not installed")
    from esr_cli.models import denoise_models, denoise_partner

    assert denoise_partner("realesr-general-v3-x4", registry=reg) == "realesr-general-wdn-v3-x4"
    assert denoise_models(reg) == ["realesr-general-v3-x4"]
    assert reg.find_weights("realesr-general-wdn-v3-x4")[1].scale == reg.find_weights("realesr-general-v3-x4")[1].scale
