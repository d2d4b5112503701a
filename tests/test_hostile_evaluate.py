"""`esr evaluate` as a careless user runs it: unknown sets, broken files, impossible borders, outputs that cannot be
written (refused before the evaluation runs, not after)."""

from __future__ import annotations

import numpy as np
import pytest
from hostile import esr, files, one_error
from PIL import Image


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "set" / "HR"
    folder.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder.parent


@pytest.mark.parametrize("args, says", [
    (["-d", "NoSuchSet"], "ESR_DATA"),
    (["--border", "4"], "SSIM needs"),
    (["--json", "{tmp}/set/HR/a.png/r.json"], "not a folder"),
    (["--csv", "{tmp}/set"], "is a folder"),
    (["--save-images", "{tmp}/set/HR/a.png"], "not a folder"),
])
def test_one_line_and_nothing_written(dataset, tmp_path, user_weights, args, says):
    before = files(tmp_path)
    run = esr("evaluate", "-m", user_weights, "-d", dataset, *[a.format(tmp=tmp_path) for a in args], "-q")
    assert says in one_error(run) and files(tmp_path) == before


@pytest.mark.parametrize("args, option", [(["--border", "-3"], "--border"), (["--shard", "3/2"], "--shard")])
def test_bad_options_are_usage_errors(dataset, user_weights, args, option):
    one_error(esr("evaluate", "-m", user_weights, "-d", dataset, *args), option)


def test_a_broken_image_in_the_set_is_one_line(dataset, user_weights):
    (dataset / "HR" / "b.png").write_bytes(b"not a png")
    assert "b.png" in one_error(esr("evaluate", "-m", user_weights, "-d", dataset, "-q"))


def test_json_and_csv_are_written_whole(dataset, tmp_path, user_weights):
    run = esr("evaluate", "-m", user_weights, "-d", dataset, "-q", "--json", tmp_path / "r.json", "--csv",
              tmp_path / "r.csv")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "r.csv").read_text().startswith("model,dataset") and '"results"' in (tmp_path / "r.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
