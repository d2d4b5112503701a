"""The `esr` command end to end, as a user runs it: a third-party plugin installed into a temp dir, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_PLUGIN = '''
"""A third-party plugin, made by the test: esr learns a new architecture through pip install."""
from dataclasses import dataclass

from torch import nn

from esr_cli import Architecture, Challenge, Weights, shuffle_scale


@dataclass
class Config:
    width: int = 4
    scale: int = 2


class Pixel(nn.Module):
    def __init__(self, width=4, scale=2):
        super().__init__()
        self.expand = nn.Conv2d(3, width, 1)
        self.to_image = nn.Conv2d(width, 3 * scale * scale, 1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.to_image(self.expand(x)))


pixel = Architecture(
    name="pixel", model=Pixel, config=Config, detect=("expand.weight", "to_image.weight"),
    read_config=lambda sd, scale: Config(sd["expand.weight"].shape[0], shuffle_scale(sd["to_image.weight"].shape[0])),
    weights=(Weights(name="pixel-x2", scale=2, url="https://example.invalid/pixel-x2.safetensors", sha256="SHA256",
                     license="MIT", source="https://example.invalid", params=39,
                     challenge=Challenge("Pixel Cup 2031", 2031, ranks={"runtime": 7}, params_m=0.000039, convs=2,
                                         runtime_ms=0.5, gpu="abacus", source="the pixel cup report")),),
)
'''


def pixel_weights(path: Path) -> Path:
    """The pixel-x2 file the throwaway plugin declares (width 4, x2), deterministic bytes."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file({"expand.weight": torch.rand(4, 3, 1, 1, generator=g), "expand.bias": torch.rand(4, generator=g),
               "to_image.weight": torch.rand(12, 4, 1, 1, generator=g), "to_image.bias": torch.rand(12, generator=g)},
              str(path))
    return path


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """pip-install a throwaway plugin distribution into a private site dir; returns the env that sees it."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "esr_pixel").mkdir()
    digest = hashlib.sha256(pixel_weights(root / "pixel-x2.safetensors").read_bytes()).hexdigest()
    (root / "esr_pixel" / "__init__.py").write_text(TINY_PLUGIN.replace("SHA256", digest))
    (root / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "esr-pixel"
        version = "9.9.9"
        [project.entry-points."esr.architectures"]
        pixel = "esr_pixel:pixel"
        [tool.setuptools]
        packages = ["esr_pixel"]
    '''))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(root)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env["ESR_TEST_PIXEL_WEIGHTS"] = str(root / "pixel-x2.safetensors")
    return env


def esr(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "esr_cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def image(path: Path, size=(20, 12)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_help_and_version_do_not_import_torch():
    code = "import sys; from esr_cli.cli import app; assert 'torch' not in sys.modules; assert 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert esr("--version").stdout.startswith("esr ")
    assert "upscale" in esr("--help").stdout
    for command in ("upscale", "video", "benchmark"):  # flags take no value: no `<bool>` metavar
        text = esr(command, "--help").stdout
        assert "--tta" in text or "--overwrite" in text or "--all" in text
        assert "<bool>" not in text and "BOOLEAN" not in text


def test_third_party_plugin_is_listed_and_runs(third_party, tmp_path):
    out = esr("plugins", "--json", env=third_party)
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["pixel"]["distribution"] == "esr-pixel" and plugins["pixel"]["version"] == "9.9.9"
    models = json.loads(esr("models", "--json", env=third_party).stdout)
    assert any(m["name"] == "pixel-x2" and m["arch"] == "pixel" for m in models)
    weights = tmp_path / "mine.pth"
    subprocess.run([sys.executable, "-c", f"import torch, esr_pixel; torch.save(esr_pixel.Pixel(5, 3).state_dict(), {str(weights)!r})"],
                   check=True, env=third_party)
    image(tmp_path / "in.png")
    run = esr("upscale", tmp_path / "in.png", "-o", tmp_path / "out", "--model", weights, "-q", env=third_party)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out" / "in_x3.png").size == (60, 36)


def test_third_party_challenge_figures_reach_models_and_benchmark(third_party, tmp_path):
    models = {m["name"]: m for m in json.loads(esr("models", "--json", env=third_party).stdout)}
    assert models["pixel-x2"]["challenge"]["event"] == "Pixel Cup 2031"
    weights = third_party["ESR_TEST_PIXEL_WEIGHTS"]  # recognised by its sha256 as pixel-x2
    run = esr("benchmark", "-m", weights, "--compare-ntire", "--json", tmp_path / "b.json", "--device", "cpu",
              "--size", "16", "--runs", "3", "--warmup", "1", env=third_party)
    assert run.returncode == 0, run.stderr
    assert "Pixel Cup 2031" in run.stdout and "runtime #7" in run.stdout and "2 / 2" in run.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["models"][0]["model"] == "pixel-x2"
    assert data["challenges"]["pixel-x2"]["ranks"] == {"runtime": 7}


def test_broken_plugin_never_breaks_the_cli(tmp_path):
    site = tmp_path / "site"
    dist = site / "esr_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: esr-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[esr.architectures]\nbroken = esr_broken_missing:arch\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    listing = esr("plugins", env=env)
    assert listing.returncode == 0 and "broken" in listing.stdout and "FAILED" in listing.stdout
    assert "esr_broken_missing" in listing.stdout
    assert esr("models", "--json", env=env).returncode == 0


@pytest.mark.parametrize("case", ["missing", "not-an-image", "unknown-arch", "truncated", "evil-pickle", "bad-name"])
def test_user_errors_are_one_line_without_traceback(tmp_path, case):
    import torch

    img = image(tmp_path / "in.png")
    model = "rlfn-x4"
    if case == "missing":
        img = tmp_path / "absent.png"
        torch.save({"head.weight": torch.zeros(1)}, tmp_path / "w.pth")
        model = tmp_path / "w.pth"
    elif case == "not-an-image":
        img = tmp_path / "fake.png"
        img.write_text("hello")
    elif case == "unknown-arch":
        torch.save({"conv_first.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "w.pth")
        model = tmp_path / "w.pth"
    elif case == "truncated":
        torch.save({"x": torch.zeros(1000)}, tmp_path / "full.pth")
        (tmp_path / "w.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:300])
        model = tmp_path / "w.pth"
    elif case == "evil-pickle":
        torch.save({"w": torch.zeros(1), "x": Evil()}, tmp_path / "w.pth")
        model = tmp_path / "w.pth"
    elif case == "bad-name":
        model = "rlfm"
    run = esr("upscale", img, "-o", tmp_path / "out", "--model", model, "-q", cwd=tmp_path,
              env=dict(os.environ, ESR_OFFLINE="1", ESR_CACHE=str(tmp_path / "cache")))
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and len([line for line in lines if line.startswith("esr: error")]) == 1, run.stderr
    assert not (tmp_path / "PWNED").exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_help_is_fast():
    """Not a timing assertion on the suite's speed: a loose bound that catches torch creeping into --help."""
    start = time.perf_counter()
    esr("--help")
    assert time.perf_counter() - start < 5


PAN_X2 = Path(__file__).resolve().parents[1].parent / "shared" / "zoo" / "weights" / "pan_paper_x2.pth"


@pytest.mark.skipif(not PAN_X2.is_file(), reason=f"needs the shared reference weights ({PAN_X2} absent)")
def test_a_zoo_file_by_path_needs_no_scale_even_where_shapes_cannot_tell(tmp_path):
    """PAN x2 and x3 have identical tensors: the file is known by its sha256, so `--model pan_paper_x2.pth` runs x2."""
    image(tmp_path / "in.png")
    run = esr("upscale", tmp_path / "in.png", "-o", tmp_path / "out", "--model", PAN_X2, "-q", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out" / "in_x2.png").size == (40, 24) and "pan-x2 x2" in run.stderr
