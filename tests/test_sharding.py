"""Sharded upscale / video / evaluate (esr_cli.sharding): the split, plain shards (--shard, srun, Kubernetes) that
combine through files, and torchrun ranks (gloo) that gather; every sharded result equals one process's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esr_cli import video
from esr_cli.errors import EsrError
from esr_cli.evaluation import evaluate
from esr_cli.sharding import Shard, balance, block, combine_files, detect, parse, share

from hostile import esr, files, one_error
from test_video import frame_md5s, make_clip, upscaler


# ---- the split ---------------------------------------------------------------------------------------

def test_parse_and_detect_every_launcher():
    assert parse("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            parse(bad)
    assert detect(None, {}) == Shard()
    assert detect("1/3", {"LOCAL_RANK": "1"}) == Shard(1, 3, 1, "option")
    assert detect(None, {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Shard(3, 8, 1, "torchrun")
    assert detect(None, {"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}) == Shard(5, 6, 2, "slurm")
    assert detect(None, {"JOB_COMPLETION_INDEX": "2", "ESR_SHARDS": "4"}) == Shard(2, 4, 0, "kubernetes")
    # torchrun wins over the SLURM variables of the allocation it runs in
    assert detect(None, {"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "4"}).launcher == "torchrun"
    with pytest.raises(EsrError, match="ESR_SHARDS"):
        detect(None, {"JOB_COMPLETION_INDEX": "0"})
    with pytest.raises(EsrError, match="not a share"):
        detect(None, {"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(EsrError, match="SLURM_NTASKS='x'"):
        detect(None, {"SLURM_PROCID": "0", "SLURM_NTASKS": "x"})


def test_balance_is_a_partition_within_one_item_of_the_mean():
    rng = np.random.default_rng(0)
    weights = list(rng.integers(1, 10**6, 200))
    for count in (1, 2, 3, 7):
        owner = balance(weights, count)
        loads = [sum(w for w, k in zip(weights, owner) if k == c) for c in range(count)]
        assert sum(loads) == sum(weights) and max(loads) - sum(weights) / count < max(weights)
        shares = [share(list(range(200)), weights, Shard(c, count)) for c in range(count)]
        assert sorted(i for s in shares for i in s) == list(range(200))
        assert all(s == sorted(s) for s in shares)  # each in the original order
    assert [list(block(10, Shard(c, 3))) for c in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_combine_files_gives_everything_to_the_last_shard(tmp_path):
    target = tmp_path / "results.json"
    assert combine_files(target, Shard(2, 3), {"k": 2}) is None
    assert combine_files(target, Shard(0, 3), {"k": 0}) is None
    assert combine_files(target, Shard(1, 3), {"k": 1}) == [{"k": 0}, {"k": 1}, {"k": 2}]
    assert list(tmp_path.iterdir()) == []  # the parts and the lock are gone


# ---- upscale -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Eleven small images of different sizes (a balanced split is not every other file)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(11):
        h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int) -> dict[str, str]:
    """What torchrun sets for each process (the test starts the processes itself)."""
    return {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def esr_ranks(args: list, world: int = 2) -> list[subprocess.CompletedProcess]:
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "esr_cli", *map(str, args)], env=torchrun_env(r, world, port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        outs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return outs


def test_plain_shards_write_exactly_the_files_of_one_process(photos, user_weights, tmp_path):
    common = ["upscale", photos, "-m", user_weights, "-q", "--threads", "1"]
    assert esr(*common, "-o", tmp_path / "one").returncode == 0
    runs = [esr(*common, "-o", tmp_path / "two", "--shard", f"{i}/2") for i in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    counts = [int(r.stderr.split("written")[0].split()[-1]) for r in runs]
    assert sum(counts) == 11 and min(counts) >= 3  # balanced by pixels, each shard its own summary
    assert "shard 0/2: " in runs[0].stderr and "shard 1/2: " in runs[1].stderr
    assert contents(tmp_path / "two") == contents(tmp_path / "one")
    assert "--shard" in one_error(esr(*common, "-o", tmp_path / "x", "--shard", "2/2"), "--shard")


def test_torchrun_ranks_gather_one_summary(photos, user_weights, tmp_path):
    # one thread in both (torchrun's OMP_NUM_THREADS=1): float sums may be split differently over more threads
    assert esr("upscale", photos, "-m", user_weights, "-q", "--threads", "1", "-o", tmp_path / "one").returncode == 0
    runs = esr_ranks(["upscale", photos, "-m", user_weights, "-q", "-o", tmp_path / "two"])
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert "2 shards: " in runs[0].stderr and "11 written" in runs[0].stderr
    assert "written" not in runs[1].stderr  # rank 0 reports for all
    assert contents(tmp_path / "two") == contents(tmp_path / "one")


@pytest.mark.slow
def test_a_killed_shard_reruns_to_completion(user_weights, tmp_path):
    """kill -9 one shard mid-batch; its rerun with --skip-existing completes the share, the other shard's files
    untouched, everything equal to one process."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    common = ["upscale", folder, "-m", user_weights, "-q", "--threads", "1", "--batch-size", "1"]
    assert esr(*common, "-o", tmp_path / "one").returncode == 0
    out = tmp_path / "two"
    assert esr(*common, "-o", out, "--shard", "1/2").returncode == 0
    theirs = contents(out)
    child = subprocess.Popen([sys.executable, "-m", "esr_cli", *map(str, common), "-o", str(out), "--shard", "0/2"],
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.png"))) == len(theirs) and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = {p.name for p in out.glob("*.png")}
    assert len(theirs) < len(left) < 24  # killed mid-share
    assert {k: v for k, v in contents(out).items() if k in theirs} == theirs
    rerun = esr(*common, "-o", out, "--shard", "0/2", "--skip-existing")
    assert rerun.returncode == 0, rerun.stderr
    assert contents(out) == contents(tmp_path / "one")  # no hidden .part left either


# ---- video -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                     "-c:a", "aac", "-shortest", seconds=1.2)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_video_segments_over_two_shards_equal_one_process(clip, tmp_path, order):
    one = video.upscale_video(clip, tmp_path / "one.mp4", upscaler(), segment_frames=8, quiet=True)
    out = tmp_path / "two.mp4"
    first, last = (video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True, shard=Shard(i, 2, 0, "option"))
                   for i in order)
    assert first.waiting  # the first to finish waits for the other
    assert not last.waiting and last.frames == one.frames == 30
    assert first.processed + last.processed == 30
    assert frame_md5s(out) == frame_md5s(tmp_path / "one.mp4")
    assert not (tmp_path / ".two.mp4.esr-work").exists()


def test_video_shard_that_died_is_completed_by_a_rerun(clip, tmp_path):
    out = tmp_path / "out.mp4"

    def crash(k: int) -> None:
        if k == 1:
            raise RuntimeError("injected crash")

    with pytest.raises(RuntimeError, match="injected crash"):
        video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True, shard=Shard(0, 2), on_segment=crash)
    assert video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True, shard=Shard(1, 2)).waiting
    assert not out.exists()
    done = video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True, shard=Shard(0, 2))
    assert not done.waiting and done.processed == 8  # only the segment the crash lost
    video.upscale_video(clip, tmp_path / "one.mp4", upscaler(), segment_frames=8, quiet=True)
    assert frame_md5s(out) == frame_md5s(tmp_path / "one.mp4")


# ---- evaluate ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_set(tmp_path_factory) -> Path:
    """HR images alone (LR made by the MATLAB bicubic), sizes multiple of 2."""
    folder = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(3)
    for i in range(7):
        h, w = 2 * int(rng.integers(8, 24)), 2 * int(rng.integers(8, 24))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_plain_shards_of_evaluate_join_into_one_process_results(bench_set, tmp_path):
    one = evaluate([upscaler()], [bench_set])
    target = tmp_path / "r.json"
    assert evaluate([upscaler()], [bench_set], shard=Shard(1, 3), combine=target) is None
    assert evaluate([upscaler()], [bench_set], shard=Shard(0, 3), combine=target) is None
    joined = evaluate([upscaler()], [bench_set], shard=Shard(2, 3), combine=target)
    assert [r.to_dict() for r in joined] == [r.to_dict() for r in one]  # every figure, to the last bit
    with pytest.raises(EsrError, match="--json"):
        evaluate([upscaler()], [bench_set], shard=Shard(0, 2, 0, "slurm"))
    with pytest.raises(EsrError, match="--compare"):
        evaluate([upscaler()], [bench_set], shard=Shard(0, 2), compare=tmp_path / "c.png", combine=target)


def test_torchrun_evaluate_table_equals_one_process(bench_set, user_weights, tmp_path):
    args = ["evaluate", "-m", user_weights, "-d", bench_set, "-q", "--per-image"]
    single = esr(*args, "--json", tmp_path / "one.json")
    assert single.returncode == 0, single.stderr
    runs = esr_ranks([*args, "--json", tmp_path / "two.json"])
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert runs[0].stdout == single.stdout and runs[1].stdout == ""
    assert (tmp_path / "two.json").read_text() == (tmp_path / "one.json").read_text()


def test_cli_video_shard_option(clip, user_weights, tmp_path):
    out = tmp_path / "v.mp4"
    runs = [esr("video", clip, "-m", user_weights, "-o", out, "-q", "--segment-frames", "8", "--shard", f"{i}/2")
            for i in (1, 0)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert "the last shard to finish writes it" in runs[0].stderr and out.is_file()
    assert "30 frames" in runs[1].stderr and files(tmp_path) == {"v.mp4"}

