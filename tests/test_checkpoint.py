"""Safe checkpoint reading: wrappers, prefixes, safetensors, and refusal of anything but tensors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from tiny import TinyNet

from esr_cli.checkpoint import read_state_dict
from esr_cli.errors import BadWeights


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"params_ema": sd, "params": {k: v * 0 for k, v in sd.items()}},
    lambda sd: {"params": sd},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {}},
])
def test_unwraps(tmp_path, wrap):
    sd = TinyNet().state_dict()
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


def test_safetensors(tmp_path):
    sd = TinyNet().state_dict()
    save_file(sd, tmp_path / "w.safetensors")
    assert read_state_dict(tmp_path / "w.safetensors").keys() == sd.keys()


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch on the hostile pickle
def test_refuses_a_pickle_that_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": torch.zeros(1), "payload": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(BadWeights, match="refused to load"):
        read_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "PWNED").exists()
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BadWeights):
        read_state_dict(tmp_path / "raw.pkl")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_missing(tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadWeights, match="truncated or corrupt"):
        read_state_dict(tmp_path / "cut.pth")
    with pytest.raises(BadWeights, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(BadWeights, match="no tensors"):
        read_state_dict(tmp_path / "empty.pth")
