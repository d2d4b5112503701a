"""esr benchmark: a named model that fails makes the run fail, after the others are measured."""

from __future__ import annotations

from hostile import esr


def test_benchmark_exits_non_zero_when_a_named_model_fails(tmp_path, user_weights):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    run = esr("benchmark", "-m", user_weights, "-m", tmp_path / "broken.pth", "--device", "cpu", "--size", "16",
              "--runs", "3", "--warmup", "1")
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "skipped" in run.stdout and "broken.pth" in run.stdout
