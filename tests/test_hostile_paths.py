"""Output paths: name templates are data, nothing is written outside -o, no temporary file outlives a run,
outputs are never inputs of a rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import esr, files, one_error

from esr_cli import images
from esr_cli.images import Exists, atomic_write
from esr_cli.upscaling import plan, upscale_files
from test_video import upscaler


@pytest.mark.parametrize("args", [
    ["--name", "../{stem}.{ext}"], ["--name", "/tmp/esr-escape-{stem}.{ext}"], ["--suffix", "/../../x"],
    ["--name", "{0}.png"], ["--name", "{stem.__class__}.png"], ["--name", "{foo}.png"], ["--name", "{stem"],
    ["--name", "{stem}}"], ["--name", ""], ["--name", "{stem!r}.{ext}"], ["--name", "{stem:>99}.{ext}"],
], ids=lambda v: " ".join(v))
def test_name_templates_are_data_and_stay_inside_the_output_folder(args, inputs, tmp_path, user_weights):
    before = files(tmp_path)
    run = esr("upscale", inputs, "-o", tmp_path / "out", "--model", user_weights, "-q", *args)
    line = one_error(run)
    assert "--name" in line
    assert files(tmp_path) == before and not list(Path("/tmp").glob("esr-escape-*"))


def test_model_field_of_a_weights_file_is_its_stem(inputs, tmp_path, user_weights):
    run = esr("upscale", inputs, "-o", tmp_path / "out", "--model", user_weights, "-q", "--name", "{stem}-{model}.{ext}")
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "out") == {"a-mine.png", "b-mine.png"}


@pytest.mark.parametrize("kind", ["file", "below-a-file"])
def test_an_output_folder_that_cannot_be_one_is_one_line(kind, inputs, tmp_path, user_weights):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if kind == "file" else tmp_path / "taken" / "sub"
    one_error(esr("upscale", inputs, "-o", out, "--model", user_weights, "-q"))
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: needs an unprivileged user")
def test_an_unwritable_output_folder_is_one_line(inputs, tmp_path, user_weights):
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    one_error(esr("upscale", inputs, "-o", out, "--model", user_weights, "-q"))


def test_a_rerun_beside_the_inputs_does_not_upscale_earlier_outputs(inputs, user_weights):
    assert esr("upscale", inputs, "--model", user_weights, "-q").returncode == 0
    run = esr("upscale", inputs, "--model", user_weights, "-q", "--skip-existing")
    assert run.returncode == 0, run.stderr
    assert files(inputs) == {"a.png", "b.png", "a_x2.png", "b_x2.png"}


def test_stale_temporary_files_of_a_killed_run_are_removed(inputs, tmp_path, user_weights):
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".a_x2.png.k1ll3d.part", out / ".b_x2.png.wr1t1ng.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another process, writing now")
    os.utime(stale, (0, 0))
    linked = out / ".c_x2.png.l1nk3d.part"  # killed between the link to its output and the unlink: new, yet done
    linked.write_bytes(b"complete")
    os.link(linked, out / "c_x2.png")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = out / f".d_x2.png.{images.HOST}-{int(dead.stdout)}.a1b2.part"  # new, but its writer on this host is gone
    alive = out / f".e_x2.png.{images.HOST}-{os.getpid()}.c3d4.part"  # this test process: still writing, for all it knows
    killed.write_bytes(b"")
    alive.write_bytes(b"")
    assert esr("upscale", inputs, "-o", out, "--model", user_weights, "-q").returncode == 0
    assert not stale.exists() and not linked.exists() and not killed.exists() and fresh.exists() and alive.exists()
    assert {"a_x2.png", "b_x2.png"} <= files(out) and (out / "c_x2.png").read_bytes() == b"complete"


def test_write_never_replaces_a_file_another_process_wrote_meanwhile(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"theirs")
    with pytest.raises(Exists):
        atomic_write(target, b"ours", replace=False)
    assert target.read_bytes() == b"theirs" and files(tmp_path) == {"a.png"}  # no temporary file left
    atomic_write(tmp_path / "b.png", b"ours", replace=False)
    atomic_write(target, b"ours")  # --overwrite replaces
    assert target.read_bytes() == b"ours" and (tmp_path / "b.png").read_bytes() == b"ours"


def test_batch_keeps_an_output_that_appeared_during_the_run(inputs, tmp_path):
    """Two runs on one folder: the output the other wrote after this run planned is kept and counted skipped."""
    jobs = plan([inputs], tmp_path / "out", 2)
    (tmp_path / "out").mkdir()
    inner = upscaler()

    class Racing:
        def __getattr__(self, name):
            return getattr(inner, name)

        def upscale_levels(self, x, *args, **kwargs):
            (tmp_path / "out" / "b_x2.png").write_bytes(b"other run")
            return inner.upscale_levels(x, *args, **kwargs)

    summary = upscale_files(jobs, Racing(), existing="skip", quiet=True)
    assert (tmp_path / "out" / "b_x2.png").read_bytes() == b"other run"
    assert [p.name for p in summary.skipped] == ["b_x2.png"] and [p.name for p in summary.written] == ["a_x2.png"]
    assert not summary.failed and files(tmp_path / "out") == {"a_x2.png", "b_x2.png"}


def test_outputs_get_the_permissions_of_any_new_file(inputs, tmp_path, user_weights):
    """mkstemp makes 0600 files: an output written through it must still be readable as the umask allows."""
    umask = os.umask(0o022)
    os.umask(umask)
    run = esr("upscale", inputs / "a.png", "-o", tmp_path / "out", "-m", user_weights, "-q")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "a_x2.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_fifo_among_the_inputs_is_one_line_not_a_hang(inputs, tmp_path, user_weights):
    os.mkfifo(inputs / "pipe.png")
    run = esr("upscale", inputs, "-o", tmp_path / "out", "-m", user_weights, "-q")  # in a folder: not an image file
    assert run.returncode == 0 and files(tmp_path / "out") == {"a_x2.png", "b_x2.png"}
    run = esr("upscale", inputs / "pipe.png", inputs / "a.png", "-o", tmp_path / "two", "-m", user_weights, "-q")
    assert run.returncode == 1 and "pipe.png: not a regular file" in run.stderr  # named: one line, the rest done
    assert files(tmp_path / "two") == {"a_x2.png"}
