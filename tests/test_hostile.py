"""Hostile and careless use of `esr upscale` and `esr benchmark`, run as a user runs them: every user-caused failure
is one line (an `esr: error:` line, or the CLI's usage error naming the option) and a non-zero exit, never a
traceback; nothing is written outside -o; no temporary file is left; the rest of a batch is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def esr(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "esr_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def one_error(run, option: str | None = None) -> str:
    """The run failed with exactly one error line and no traceback; returns that line."""
    text = run.stdout + run.stderr
    assert run.returncode != 0, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("esr: error:") or line.startswith("Error:")
              or "Invalid value" in line or "Error" in line.split(":")[0]]
    assert len(errors) >= 1, text
    if option:
        assert option in text, text
    else:
        assert len([line for line in text.splitlines() if line.startswith("esr: error:")]) == 1, text
    return errors[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A small random network of an installed architecture (imdn-rtc x2), as a user's own file."""
    from esr_cli import default_registry

    arch = default_registry().get("imdn-rtc")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mine.pth"
    torch.save(arch.build(arch.config(scale=2)).state_dict(), path)
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ---- options: range-checked when parsed, before any model loads ----------------------------------------

@pytest.mark.parametrize("args, option", [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size"),
    (["--tile", "8"], "--tile"), (["--tile", "-5"], "--tile"), (["--tile", "big"], "--tile"),
    (["--tile-overlap", "-3"], "--tile-overlap"), (["--tile-overlap", "1000"], "--tile-overlap"),
    (["--outscale", "0"], "--outscale"), (["--outscale", "-2"], "--outscale"), (["--outscale", "nan"], "--outscale"),
    (["--outscale", "inf"], "--outscale"), (["--outscale", "100000"], "--outscale"),
    (["--threads", "0"], "--threads"), (["--threads", "-4"], "--threads"),
    (["--quality", "500"], "--quality"), (["--quality", "-5", "--format", "webp"], "--quality"),
    (["--max-pixels", "0"], "--max-pixels"), (["--max-pixels", "-1"], "--max-pixels"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_options_are_usage_errors_naming_the_option(args, option, inputs, tmp_path):
    run = esr("upscale", inputs, "-o", tmp_path / "out", "--model", "no-such-model", *args)
    one_error(run, option)
    assert run.returncode == 2 and not (tmp_path / "out").exists()  # refused before the model (a bad name) loads


def test_bad_device_is_one_line(inputs, tmp_path, weights):
    one_error(esr("upscale", inputs, "-o", tmp_path / "out", "--model", weights, "--device", "tpu"))


# ---- output paths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--name", "../{stem}.{ext}"], ["--name", "/tmp/esr-escape-{stem}.{ext}"], ["--suffix", "/../../x"],
    ["--name", "{0}.png"], ["--name", "{stem.__class__}.png"], ["--name", "{foo}.png"], ["--name", "{stem"],
    ["--name", "{stem}}"], ["--name", ""], ["--name", "{stem!r}.{ext}"], ["--name", "{stem:>99}.{ext}"],
], ids=lambda v: " ".join(v))
def test_name_templates_are_data_and_stay_inside_the_output_folder(args, inputs, tmp_path, weights):
    before = files(tmp_path)
    run = esr("upscale", inputs, "-o", tmp_path / "out", "--model", weights, "-q", *args)
    line = one_error(run)
    assert "--name" in line
    assert files(tmp_path) == before and not list(Path("/tmp").glob("esr-escape-*"))


def test_model_field_of_a_weights_file_is_its_stem(inputs, tmp_path, weights):
    run = esr("upscale", inputs, "-o", tmp_path / "out", "--model", weights, "-q", "--name", "{stem}-{model}.{ext}")
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "out") == {"a-mine.png", "b-mine.png"}


@pytest.mark.parametrize("kind", ["file", "below-a-file"])
def test_an_output_folder_that_cannot_be_one_is_one_line(kind, inputs, tmp_path, weights):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if kind == "file" else tmp_path / "taken" / "sub"
    one_error(esr("upscale", inputs, "-o", out, "--model", weights, "-q"))
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: needs an unprivileged user")
def test_an_unwritable_output_folder_is_one_line(inputs, tmp_path, weights):
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    one_error(esr("upscale", inputs, "-o", out, "--model", weights, "-q"))


def test_a_rerun_beside_the_inputs_does_not_upscale_earlier_outputs(inputs, weights):
    assert esr("upscale", inputs, "--model", weights, "-q").returncode == 0
    run = esr("upscale", inputs, "--model", weights, "-q", "--skip-existing")
    assert run.returncode == 0, run.stderr
    assert files(inputs) == {"a.png", "b.png", "a_x2.png", "b_x2.png"}


def test_stale_temporary_files_of_a_killed_run_are_removed(inputs, tmp_path, weights):
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".a_x2.png.k1ll3d.part", out / ".b_x2.png.wr1t1ng.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another process, writing now")
    os.utime(stale, (0, 0))
    assert esr("upscale", inputs, "-o", out, "--model", weights, "-q").returncode == 0
    assert not stale.exists() and fresh.exists() and {"a_x2.png", "b_x2.png"} <= files(out)


# ---- images that a format cannot hold as they are ------------------------------------------------------

def test_tiff_in_tiff_out_and_gray_alpha_as_bmp(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "scan.tif")
    Image.fromarray(rng.integers(0, 256, (12, 16, 2), dtype=np.uint8), mode="LA").save(folder / "mask.png")
    run = esr("upscale", folder / "scan.tif", "-o", tmp_path / "out", "--model", weights, "-q")
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out" / "scan_x2.tif").size == (32, 24)
    run = esr("upscale", folder / "mask.png", "-o", tmp_path / "out", "--model", weights, "-q", "--format", "bmp")
    assert run.returncode == 0, run.stderr
    bmp = Image.open(tmp_path / "out" / "mask_x2.bmp")
    assert bmp.size == (32, 24) and bmp.mode in ("RGB", "RGBA")  # written as 32-bit RGBA (Pillow may read it as RGB)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


# ---- weights ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["lying-header", "truncated", "pickle-renamed"])
def test_unreadable_safetensors_are_one_line(case, inputs, tmp_path, weights):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    if case == "pickle-renamed":
        path.write_bytes(weights.read_bytes())
    else:
        save_file({"w": torch.zeros(64, 64)}, str(path))
        data = path.read_bytes()
        path.write_bytes(data[:-100] if case == "truncated" else (10**9).to_bytes(8, "little") + data[8:])
    line = one_error(esr("upscale", inputs, "-o", tmp_path / "out", "--model", path, "-q"))
    assert "bad.safetensors" in line and not (tmp_path / "out" / "a_x2.png").exists()


# ---- benchmark -------------------------------------------------------------------------------------------

def test_benchmark_exits_non_zero_when_a_named_model_fails(tmp_path, weights):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    run = esr("benchmark", "-m", weights, "-m", tmp_path / "broken.pth", "--device", "cpu", "--size", "16",
              "--runs", "3", "--warmup", "1")
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "skipped" in run.stdout and "broken.pth" in run.stdout
