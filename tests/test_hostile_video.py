"""Videos as users have them: RGB sources, outputs that cannot hold the streams, -o on a folder, failures that
leave nothing behind. Through the CLI, with the bundled ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hostile import esr, files, one_error
from PIL import Image

from esr_cli import ffmpeg, video
from test_video import make_clip, upscaler

FFMPEG = ffmpeg.ffmpeg_exe()


def colour_space(path: Path) -> str:
    run = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-frames:v", "1", "-vf", "showinfo", "-f", "null",
                          "-"], capture_output=True, text=True)
    return next(line for line in run.stderr.splitlines() if "color_space:" in line or "colorspace" in line)


def rgb_frames(path: Path) -> np.ndarray:
    run = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True)
    return np.frombuffer(run.stdout, np.uint8)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("src")
    make_clip(folder / "x264rgb.mkv", "-c:v", "libx264rgb", "-c:a", "aac", "-shortest", seconds=0.4, size="32x24")
    make_clip(folder / "png.mov", "-c:v", "png", "-c:a", "aac", "-shortest", seconds=0.4, size="32x24")
    make_clip(folder / "ffv1.mkv", "-c:v", "ffv1", "-pix_fmt", "gbrp", "-an", seconds=0.4, size="32x24")
    make_clip(folder / "aac.mp4", "-c:v", "libx264", "-c:a", "aac", "-shortest", seconds=0.4, size="32x24")
    return folder


@pytest.mark.parametrize("name", ["x264rgb.mkv", "png.mov"])
def test_rgb_sources_become_bt709_yuv(sources, user_weights, tmp_path, name):
    out = tmp_path / "out.mp4"
    run = esr("video", sources / name, "-m", user_weights, "-o", out, "-q")
    assert run.returncode == 0, run.stderr
    assert "bt709" in colour_space(out) and files(tmp_path) == {"out.mp4"}


def test_rgb_in_rgb_out_is_the_frames_exactly(sources, user_weights, tmp_path):
    """FFV1 gbrp in, FFV1 gbrp out: lossless, so its frames are the PNG frames of --frames-dir."""
    out = tmp_path / "out.mkv"
    run = esr("video", sources / "ffv1.mkv", "-m", user_weights, "-o", out, "-q", "--codec", "ffv1", "--pix-fmt", "gbrp")
    assert run.returncode == 0, run.stderr
    run = esr("video", sources / "ffv1.mkv", "-m", user_weights, "--frames-dir", tmp_path / "frames", "-q")
    assert run.returncode == 0, run.stderr
    pngs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "frames").glob("*.png"))]
    assert len(pngs) == 10 and np.array_equal(rgb_frames(out), np.concatenate([p.ravel() for p in pngs]))


@pytest.mark.parametrize("name, why", [("x.xyz", ".xyz"), ("noext", "without extension"), ("x.webm", ".webm")])
def test_a_container_that_cannot_hold_the_streams_is_refused_first(sources, user_weights, tmp_path, name, why):
    run = esr("video", sources / "aac.mp4", "-m", user_weights, "-o", tmp_path / "out" / name, "-q")
    assert why in one_error(run) and "--codec" in run.stderr
    assert files(tmp_path) == set()  # no work folder, no rehearsal file: refused before a frame was decoded


def test_bad_encoder_option_is_refused_before_decoding(sources, user_weights, tmp_path):
    run = esr("video", sources / "aac.mp4", "-m", user_weights, "-o", tmp_path / "o.mp4", "-q", "--pix-fmt", "nope")
    assert "libx264" in one_error(run) and files(tmp_path) == set()


def test_output_folder_gets_the_default_name(sources, user_weights, tmp_path):
    run = esr("video", sources / "aac.mp4", "-m", user_weights, "-o", tmp_path, "-q")
    assert run.returncode == 0, run.stderr
    assert files(tmp_path) == {"aac_x2.mp4"}


def test_failure_before_a_segment_removes_the_work_folder(sources, tmp_path):
    class Broken:
        """An upscaler that dies on its first batch (an out-of-memory the engine cannot split, say)."""

        def __init__(self):
            self.inner = upscaler()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def upscale_levels(self, x, *args, **kwargs):
            raise RuntimeError("died")

    with pytest.raises(RuntimeError, match="died"):
        video.upscale_video(sources / "aac.mp4", tmp_path / "o.mp4", Broken(), quiet=True)
    assert files(tmp_path) == set() and not list(tmp_path.iterdir())
