"""Unreadable weights: one line naming the file and what is wrong."""

from __future__ import annotations

import pytest
import torch
from hostile import esr, one_error


@pytest.mark.parametrize("case", ["lying-header", "truncated", "pickle-renamed"])
def test_unreadable_safetensors_are_one_line(case, inputs, tmp_path, user_weights):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    if case == "pickle-renamed":
        path.write_bytes(user_weights.read_bytes())
    else:
        save_file({"w": torch.zeros(64, 64)}, str(path))
        data = path.read_bytes()
        path.write_bytes(data[:-100] if case == "truncated" else (10**9).to_bytes(8, "little") + data[8:])
    line = one_error(esr("upscale", inputs, "-o", tmp_path / "out", "--model", path, "-q"))
    assert "bad.safetensors" in line and not (tmp_path / "out" / "a_x2.png").exists()
