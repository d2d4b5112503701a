"""esr train / finetune misused: every bad recipe value is one line before anything runs, and no model is written."""

from __future__ import annotations

import pytest
from hostile import esr, one_error


@pytest.fixture
def recipe(tmp_path, inputs):
    path = tmp_path / "r.toml"
    path.write_text(f'name = "t"\n[model]\narch = "imdn-rtc"\nscale = 2\n[data]\ntrain = ["{inputs}"]\npatch = 8\n'
                    'batch = 2\nworkers = 0\n[train]\niters = 2\n')
    return path


@pytest.mark.parametrize("setting, says", [
    ("train.iters=abc", "train.iters = 'abc': expected a whole number"),
    ("train.iters=-1", "train.iters = -1: must be >= 1"),
    ('optim.lr="fast"', "optim.lr = 'fast': expected a number"),
    ("optim.lr=0", "optim.lr = 0: must be > 0"),
    ("data.batch=0", "data.batch = 0: must be >= 1"),
    ("train.ema=1.5", "train.ema = 1.5"),
    ("data.flip=3", "data.flip = 3: expected true or false"),
    ("train.nothing=1", "unknown key train.nothing"),
], ids=lambda v: v.split("=")[0] + "=" + v.split("=")[1][:6] if "=" in v else "")
def test_bad_recipe_values_are_one_line_before_anything_runs(setting, says, recipe, tmp_path):
    run = esr("train", "-c", recipe, "-o", tmp_path / "run", "--set", setting)
    assert says in one_error(run)
    assert not (tmp_path / "run").exists()


def test_a_folder_given_as_a_string_is_a_list_of_one(recipe, tmp_path, inputs):
    run = esr("train", "-c", recipe, "-o", tmp_path / "run", "--set", f'data.train="{inputs}"')
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "model.pth").is_file()


def test_resume_with_no_run_says_so_and_starts_it(recipe, tmp_path):
    run = esr("train", "-c", recipe, "-o", tmp_path / "run", "--resume")
    assert run.returncode == 0, run.stderr
    assert "nothing to resume" in run.stderr and (tmp_path / "run" / "model.pth").is_file()


def test_an_output_below_a_file_is_one_line(recipe, tmp_path):
    (tmp_path / "taken").write_text("a file")
    one_error(esr("train", "-c", recipe, "-o", tmp_path / "taken" / "run"))
    assert (tmp_path / "taken").read_text() == "a file"
