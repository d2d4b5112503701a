"""Hostile options: range-checked when parsed, before any model loads; a usage error naming the option."""

from __future__ import annotations

import pytest
from hostile import esr, one_error


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


def test_bad_device_is_one_line(inputs, tmp_path, user_weights):
    one_error(esr("upscale", inputs, "-o", tmp_path / "out", "--model", user_weights, "--device", "tpu"))
