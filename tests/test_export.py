"""`esr export`: every installed architecture to ONNX (and to ncnn where ncnn can run it), each checked against
esr's PyTorch engine on sizes the export's own check did not use; weights files that `--model` loads back; training
layouts fused; and the refusals, one line each, with no file left behind."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from esr_cli import Architecture, default_registry, read_state_dict, registry
from esr_cli.cli import app
from esr_cli.engine import Upscaler
from esr_cli.errors import EsrError
from esr_cli.export import TOLERANCE, Deployable, TraceablePooling, check, export_model, to_onnx
from esr_cli.reparam import fuse_state_dict
from esr_cli.export_ncnn import ncnn_runner, to_ncnn
from esr_cli.loaded import LoadedModel

from tiny import TinyConfig, TinyNet, tiny

REGISTRY = default_registry()
ARCHS = sorted(REGISTRY.architectures)
SLOW_ONNX = {"bsrn-s", "efdn", "gfmn", "mdrn", "mobilesr", "pfdnlite", "repafdn", "safmn", "safmnpp", "smfan"}
"""Over 5 s each on 2 cores (measured): the tracer's shape algebra grows with a minimum size or a size multiple to
pad to, and with window attention."""
NO_NCNN = {
    "gfmn": "cannot pad itself", "safmn": "cannot pad itself", "safmnpp": "cannot pad itself",
    "safmnv3": "cannot pad itself",  # sides must be multiples of 8 (and their 1/8 max-pool has no ncnn layer)
    "imdn-rte": "cannot pad itself",  # sides must be even
    "smfan": "ncnn has no layer for F.adaptive_max_pool2d",  # a max-pool to 1/8 of the image size
    "mdrn": "ncnn has no layer for .*torch.var",  # ECCA's variance
    "mobilesr": "ncnn has no layer for F.pad",  # window attention: pads and reshapes that follow the image size
    "pfdnlite": "ncnn has no layer for torch.repeat_interleave",
}
"""First-party architectures that the ncnn route refuses, and why (README, "Export and deploy")."""
COUNTS = re.compile(r"(^|_)(n_)?(num_)?(res)?(blocks?|nb|convs|erbs)$")
WIDTHS = re.compile(r"^(n_feats|features|num_feat|channels|dim)$")


def small_config(arch: Architecture):
    """The architecture's default config at its largest scale up to 4, with every block count at 1 and widths
    above 64 at 64 (when the network still builds and runs so): the same operations, a shorter graph to trace."""
    cfg = arch.config(scale=4 if 4 in arch.scales else max(arch.scales))
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fewer = {k: 1 for k, v in fields.items() if COUNTS.search(k) and type(v) is int}
    narrower = {k: 64 for k, v in fields.items() if WIDTHS.search(k) and type(v) is int and v > 64}
    for changes in ({**fewer, **narrower}, fewer):
        try:
            small = dataclasses.replace(cfg, **changes)
            side = 16 * arch.size_multiple
            with torch.no_grad():
                arch.build(small).eval()(torch.rand(1, 3, side, side) * arch.input_range)
            return small
        except Exception:
            continue
    return cfg


def random_model(arch: Architecture, config=None, seed: int = 0) -> LoadedModel:
    """A network of `arch` with random weights, its last conv rescaled so that the output spreads over [0, 1]
    (mean 0.5, std ~0.15 of the range on random input): a comparison then sees values the clamp does not hide.
    Random weights alone saturate some networks (SPAN scales its features by 255)."""
    config = config or small_config(arch)
    torch.manual_seed(seed)
    module = arch.build(config).eval()
    ran = []
    hooks = [m.register_forward_hook(lambda m, i, o: ran.append((m, o))) for m in module.modules()
             if isinstance(m, nn.Conv2d)]
    side = 32 * arch.size_multiple
    with torch.no_grad():
        y = module(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed)) * arch.input_range)
    for hook in hooks:
        hook.remove()
    last, out = ran[-1]  # the tail conv: the output is it (pixel-shuffled), plus what the network adds to it
    gain = 0.15 * arch.input_range / float(out.std())
    with torch.no_grad():
        last.weight.mul_(gain)
        if last.bias is not None:  # mean(y) = mean(out) + mean(the rest) before; after: 0.5 of the range
            last.bias.mul_(gain).add_(0.5 * arch.input_range - gain * float(out.mean()) - float(y.mean() - out.mean()))
    return LoadedModel(module, arch, config)


def engine(model: LoadedModel) -> Upscaler:
    import copy

    return Upscaler(LoadedModel(copy.deepcopy(model.module), model.architecture, model.config), tile=0)


def informative(y: torch.Tensor) -> bool:
    """Enough output pixels strictly inside (0, 1) that a wrong graph cannot hide behind the clamp."""
    return float(((y > 0) & (y < 1)).float().mean()) > 0.25


def onnx_param(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW_ONNX else name


# ---- every architecture --------------------------------------------------------------------------

@pytest.mark.parametrize("name", [onnx_param(n) for n in ARCHS])
def test_every_architecture_exports_to_onnx(name):
    arch = REGISTRY.architectures[name]
    model = random_model(arch)
    data, agreement = to_onnx(model, source="random weights")
    assert agreement.max_error <= TOLERANCE and agreement.rounding is None
    proto = onnx.load_from_string(data)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["architecture"] == name and meta["scale"] == str(model.scale) and meta["source"] == "random weights"
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 29, 23, generator=torch.Generator().manual_seed(7))  # a size the export's check did not use
    expected = engine(model).upscale(x)
    [got] = session.run(None, {"input": x.numpy()})
    assert got.shape == (3, 3, 29 * model.scale, 23 * model.scale)
    assert informative(expected)
    assert np.abs(got - expected.numpy()).max() <= TOLERANCE


@pytest.mark.parametrize("name", ARCHS)
def test_ncnn_converts_what_it_can_run(name, tmp_path):
    arch = REGISTRY.architectures[name]
    model = random_model(arch)
    if name in NO_NCNN:
        with pytest.raises(EsrError, match=NO_NCNN[name]) as refused:
            to_ncnn(model)
        assert "\n" not in str(refused.value)
        return
    try:
        param, weights, agreement = to_ncnn(model)
    except EsrError as e:  # a third-party architecture may be out of ncnn's reach: it must say so in one line
        assert name not in {"rlfn", "span", "imdn", "compact", "esrgan"} and "\n" not in str(e)
        return
    assert agreement.max_error <= TOLERANCE and agreement.rounding is None
    text = param.decode()
    assert re.search(r"^Input\s+data\s+0 1 data\b", text, re.M) and re.search(r"\boutput\b", text.splitlines()[-1])
    (tmp_path / "m.param").write_bytes(param)
    (tmp_path / "m.bin").write_bytes(weights)
    x = torch.rand(1, 3, 33, 27, generator=torch.Generator().manual_seed(7))
    got = ncnn_runner(tmp_path / "m.param", tmp_path / "m.bin", name, fp16=False)(x)
    expected = engine(model).upscale(x)
    assert informative(expected)
    assert got.shape == expected.shape and (got - expected).abs().max() <= TOLERANCE


# ---- the graph's own padding and pooling ---------------------------------------------------------

def test_deployable_pads_like_the_engine():
    """Reflect where both pads are smaller than their sides, replicate otherwise, up to the minimum size and then the
    multiple: the bottom rows and right columns of the output show which (TinyNet sees 2 pixels around)."""
    arch = dataclasses.replace(tiny, min_size=9, size_multiple=4)
    model = random_model(arch, TinyConfig(scale=2))
    wrapper, reference = Deployable(model).eval(), engine(model)
    for h, w in [(5, 7), (6, 11), (10, 13), (12, 16), (1, 1), (17, 3)]:
        x = torch.rand(2, 3, h, w)
        with torch.no_grad():
            got = wrapper(x)
        assert got.shape == (2, 3, 2 * h, 2 * w)
        assert (got - reference.upscale(x)).abs().max() <= 1e-6, (h, w)


@pytest.mark.parametrize("n,k", [(37, 4), (40, 5), (9, 9), (7, 1), (13, 6), (64, 8)])
def test_traceable_pooling_is_adaptive_max_pool(n, k):
    x = torch.randn(2, 3, n, n + 5)
    expected = F.adaptive_max_pool2d(x, (k, max((n + 5) // 8, 1)))
    with TraceablePooling():
        got = F.adaptive_max_pool2d(x, (k, max((n + 5) // 8, 1)))
    assert torch.equal(got, expected)


class Cancelling(TinyNet):
    """Adds and takes away 1e4 at the end, as SPAN's 255-scaled features make float32 round: esr's own fp32 output is
    then up to 4.9e-4 (half a float32 step at 1e4) away from the exact one."""

    def forward(self, x):
        return (super().forward(x) + 1e4) - 1e4


def test_float32_rounding_is_told_from_a_wrong_graph():
    model = random_model(dataclasses.replace(tiny, name="cancelling", model=Cancelling), TinyConfig(scale=2))
    exact = Deployable(model).double().eval()
    inputs = [torch.rand(1, 3, 16, 20)]
    with torch.no_grad():
        agreement = check(model, lambda x: exact(x.double()), inputs, TOLERANCE, "float64")
        assert TOLERANCE < agreement.max_error <= 5e-4 and agreement.rounding == agreement.max_error
        with pytest.raises(EsrError, match="esr's own fp32 is .* from float64 here"):
            check(model, lambda x: exact(x.double()) + 5e-3, inputs, TOLERANCE, "float64")
        with pytest.raises(EsrError, match="differs from PyTorch"):  # half precision: no excuse taken
            check(model, lambda x: exact(x.double()), inputs, TOLERANCE, "float64", exact=False)


# ---- weights files and the training layout -------------------------------------------------------

def weights_file(path: Path, name: str = "rlfn", seed: int = 0) -> LoadedModel:
    model = random_model(REGISTRY.architectures[name], seed=seed)
    torch.save(model.module.state_dict(), path)
    return model


def picture(path: Path, size=(23, 17)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def upscale(tmp_path: Path, *options: str) -> np.ndarray:
    folder = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    result = CliRunner().invoke(app, ["upscale", str(tmp_path / "in.png"), "-o", str(folder), "-q",
                                      "--device", "cpu", "--precision", "fp32", *options])
    assert result.exit_code == 0, result.output
    [written] = folder.iterdir()
    return np.asarray(Image.open(written))


@pytest.mark.parametrize("suffix,fp16", [(".safetensors", False), (".pth", False), (".safetensors", True)])
def test_weights_export_loads_with_model(tmp_path, suffix, fp16):
    weights_file(tmp_path / "rlfn.pth")
    picture(tmp_path / "in.png")
    out = tmp_path / f"exported{suffix}"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "rlfn.pth"), "-o", str(out),
                                      *(["--fp16"] if fp16 else [])])
    assert result.exit_code == 0, result.output
    assert out.is_file() and str(out) in result.output
    (tmp_path / "plain").write_bytes(b"")  # as readable as any file made here (not the 0600 of a temporary file)
    assert out.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert all(v.dtype == (torch.float16 if fp16 else torch.float32) for v in read_state_dict(out).values())
    original = upscale(tmp_path, "--model", str(tmp_path / "rlfn.pth"))
    exported = upscale(tmp_path, "--model", str(out))
    if fp16:
        assert np.abs(original.astype(int) - exported).max() <= 2  # half-precision weights, fp32 arithmetic
    else:
        assert np.array_equal(original, exported)


def test_weights_whose_tensors_fit_several_architectures_say_how_to_load(tmp_path):
    """MegSR's pruned RFDN has the tensors of an RFDN: the exported file needs --arch to load as itself."""
    weights_file(tmp_path / "prune.pth", "rfdn-prune")
    done = export_model(str(tmp_path / "prune.pth"), tmp_path / "p.safetensors", arch="rfdn-prune")
    assert "--arch rfdn-prune" in done.note


def test_training_layout_is_fused_with_fuse(tmp_path):
    """A SPAN saved with its training-time Conv3XC blocks: refused without --fuse (one line naming it), fused with
    it into span's deploy layout, whose output equals the training network's."""
    span = REGISTRY.architectures["span"]
    config = dataclasses.replace(small_config(span), channels=8, scale=2)
    torch.manual_seed(3)
    trained = span.train_build(config).eval()
    torch.save(trained.state_dict(), tmp_path / "train.pth")
    out = tmp_path / "span.safetensors"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "train.pth"), "-o", str(out)])
    assert isinstance(result.exception, EsrError) and "pass --fuse" in str(result.exception)
    assert not out.exists()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "train.pth"), "-o", str(out), "--fuse"])
    assert result.exit_code == 0, result.output
    assert "re-parameterisable blocks fused" in result.output
    state = read_state_dict(out)
    match = REGISTRY.detect(state)
    assert match.architecture.name == "span" and match.config == config
    deploy = span.build(config).eval()
    deploy.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        expected = trained(x)
        assert (deploy(x) - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))


def test_fuse_state_dict_leaves_plain_convs_alone():
    plainrfdn = REGISTRY.architectures["plainrfdn"]  # its deploy 3x3 convs are named `conv3x3`, like ECB's branch
    state = plainrfdn.build(small_config(plainrfdn)).state_dict()
    fused, blocks = fuse_state_dict(state)
    assert blocks == 0 and fused.keys() == state.keys()
    trained = plainrfdn.train_build(small_config(plainrfdn)).state_dict()
    fused, blocks = fuse_state_dict(trained)
    assert blocks > 0 and {k: v.shape for k, v in fused.items()} == {k: v.shape for k, v in state.items()}


# ---- the command ---------------------------------------------------------------------------------

def test_onnx_export_runs_on_any_size(tmp_path):
    model = weights_file(tmp_path / "rlfn.pth")
    picture(tmp_path / "in.png", (31, 19))
    out = tmp_path / "deploy" / "rlfn.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "rlfn.pth"), "-o", str(out),
                                      "--check-image", str(tmp_path / "in.png")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime vs PyTorch: max |diff|" in result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 8, 9), (2, 3, 40, 17)]:  # below RLFN's minimum size (15): the graph pads itself
        x = torch.rand(*shape)
        [got] = session.run(None, {"input": x.numpy()})
        assert np.abs(got - engine(model).upscale(x).numpy()).max() <= TOLERANCE


def test_fp16_onnx_is_checked_at_its_own_tolerance(tmp_path):
    weights_file(tmp_path / "span.pth", "span")
    done = export_model(str(tmp_path / "span.pth"), tmp_path / "span16.onnx", fp16=True)
    assert 1e-4 < done.agreement.max_error <= 1e-2  # half precision: visibly not fp32, within a few levels of 255
    proto = onnx.load(str(tmp_path / "span16.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)


def test_ncnn_export_writes_param_and_bin_for_upscayl(tmp_path):
    weights_file(tmp_path / "rlfn.pth")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "rlfn.pth"), "-o", str(tmp_path / "my-model.param")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "my-model.param").is_file() and (tmp_path / "my-model.bin").is_file()
    assert "ncnn vs PyTorch" in result.output
    assert "upscayl reads the scale from the file name" not in result.output  # x4: upscayl's default


class SizeBranch(TinyNet):
    """A network with a Python branch on the input size (here: odd widths come out darker). A tracer records the
    branch that its example input took, so the graph is wrong for the other sizes: the check must catch it."""

    def forward(self, x):
        y = super().forward(x)
        return 0.5 * y if x.shape[-1] % 2 else y


@pytest.mark.parametrize("suffix", [".onnx", ".param"])
def test_a_graph_that_disagrees_is_refused_and_not_written(tmp_path, monkeypatch, suffix):
    branching = dataclasses.replace(tiny, name="branching", model=SizeBranch)
    monkeypatch.setattr(registry, "default_registry", lambda: registry.Registry.of(branching))
    torch.manual_seed(0)
    torch.save(TinyNet(scale=2).state_dict(), tmp_path / "branching.pth")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "branching.pth"), "-o", str(tmp_path / f"b{suffix}")])
    assert isinstance(result.exception, EsrError), result.output
    message = str(result.exception)
    assert "differs from PyTorch" in message and "no file written" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["branching.pth"]  # no file, no temporary left


@pytest.mark.parametrize("output,options,expected", [
    ("model.txt", [], "cannot tell the format from the suffix"),
    ("model.safetensors", ["--format", "onnx"], "is safetensors, not onnx"),
    ("a-file/model.onnx", [], "not a folder"),
    ("folder", ["--format", "onnx"], "is a folder"),
])
def test_refusals_are_one_line_and_leave_nothing(tmp_path, output, options, expected):
    weights_file(tmp_path / "w.pth", "span")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["export", str(tmp_path / "w.pth"), "-o", str(tmp_path / output), *options])
    assert isinstance(result.exception, EsrError), result.output
    assert expected in str(result.exception) and "\n" not in str(result.exception)
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_option_is_a_usage_error_naming_it(tmp_path):
    result = CliRunner().invoke(app, ["export", "rlfn", "-o", str(tmp_path / "x.onnx"), "--format", "tflite"])
    assert result.exit_code == 2 and "'--format'" in result.output and "tflite" in result.output
    result = CliRunner().invoke(app, ["export", "rlfn"])
    assert result.exit_code == 2 and "'-o' / '--output'" in result.output


def test_the_command_ends_an_error_in_one_line(tmp_path):
    """The real console entry point: `esr: error: ...` on stderr, exit status 1."""
    run = subprocess.run([sys.executable, "-m", "esr_cli", "export", str(tmp_path / "missing.pth"), "-o",
                          str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.startswith("esr: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert "no such weights file" in run.stderr and not (tmp_path / "m.onnx").exists()


# ---- the authors' weights (when the shared reference files are here) -----------------------------

ZOO = SHARED / "zoo" / "weights"
SET5 = SHARED / "datasets" / "Set5"


@pytest.mark.slow
@pytest.mark.skipif(not (ZOO / "rlfn_ntire22_x4.pth").is_file(), reason=f"needs the shared reference weights in {ZOO}")
@pytest.mark.parametrize("file,suffix", [("rlfn_ntire22_x4.pth", ".onnx"), ("rlfn_ntire22_x4.pth", ".param"),
                                         ("span_ntire24_x4.pth", ".param")])
def test_the_authors_weights_export_within_tolerance(tmp_path, file, suffix):
    images = sorted((SET5 / "LR_bicubic" / "X4").glob("*.png"))
    done = export_model(str(ZOO / file), tmp_path / f"model{suffix}", check_image=images[0] if images else None)
    agreed = done.agreement
    assert agreed.max_error <= TOLERANCE or agreed.max_error <= 4 * agreed.rounding
    assert all(p.is_file() for p in done.paths)
