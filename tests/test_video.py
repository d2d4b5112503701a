"""`esr video`: small clips made here with the bundled ffmpeg, upscaled by the tiny test network."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from esr_cli import ffmpeg, video
from esr_cli.engine import Upscaler
from esr_cli.errors import EsrError
from esr_cli.loaded import LoadedModel

from tiny import TinyConfig, TinyNet, tiny

FFMPEG = ffmpeg.ffmpeg_exe()


def make_clip(path: Path, *args: str, seconds: float = 1.0, rate: str = "25", size: str = "64x48") -> Path:
    """testsrc2 + a 440 Hz tone, encoded with x264 (B-frames) and AAC; extra output options in `args`."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *args, str(path)]
    subprocess.run(cmd, check=True)
    return path


def upscaler(batch_size: int = 4) -> Upscaler:
    torch.manual_seed(0)
    return Upscaler(LoadedModel(TinyNet(scale=2), tiny, TinyConfig(scale=2)), batch_size=batch_size)


def stream_md5(path: Path, stream: str) -> str:
    """md5 of the stream-copied packets of one stream."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", stream, "-c", "copy",
           "-f", "md5", "-"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def frame_md5s(path: Path) -> list[str]:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-f", "framemd5", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [ln.split(",")[-1].strip() for ln in out.splitlines() if ln and not ln.startswith("#")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """1 s at 30000/1001 fps with sound and a colour-tagged BT.709 stream."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                     "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                     "-c:a", "aac", "-shortest", rate="30000/1001")


def test_probe(clip):
    info = ffmpeg.probe(clip)
    assert (info.width, info.height, info.fps, info.vfr, info.bits) == (64, 48, Fraction(30000, 1001), False, 8)
    assert info.frames == len(ffmpeg.frame_timestamps(clip)) == 29 and info.streams == ["Video", "Audio"]
    assert info.color["color_space"] == "bt709"


@pytest.mark.slow
def test_upscale_keeps_timing_audio_and_colour(clip, tmp_path):
    out = tmp_path / "out.mp4"
    summary = video.upscale_video(clip, out, upscaler(), segment_frames=12, quiet=True)
    src, dst = ffmpeg.probe(clip), ffmpeg.probe(out)
    assert (dst.width, dst.height) == (2 * src.width, 2 * src.height)
    assert dst.frames == src.frames == summary.frames == 29
    assert dst.fps == src.fps and not dst.vfr
    assert abs(dst.duration - src.duration) < 1 / float(src.fps)
    assert ffmpeg.frame_timestamps(out) == ffmpeg.frame_timestamps(clip)
    assert stream_md5(out, "0:a") == stream_md5(clip, "0:a")
    assert dst.color["color_space"] == "bt709"
    assert not list(tmp_path.glob(".*")), "work dir and temporary file removed"


def test_vfr_timestamps_and_subtitles_kept_in_mkv(tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,800\nhello\n")
    src = tmp_path / "vfr.mkv"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25:duration=1",
                    "-f", "lavfi", "-i", "sine=duration=1.4", "-i", str(srt),
                    "-map", "0:v", "-map", "1:a", "-map", "2:s",
                    "-vf", "setpts='(N/25+N*N/800)/TB'", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-c:a", "flac", "-c:s", "srt", str(src)], check=True)
    assert ffmpeg.probe(src).vfr
    out = tmp_path / "vfr_x2.mkv"
    video.upscale_video(src, out, upscaler(), segment_frames=8, quiet=True)
    assert ffmpeg.frame_timestamps(out) == ffmpeg.frame_timestamps(src)
    assert ffmpeg.probe(out).streams == ["Video", "Audio", "Subtitle"]
    assert stream_md5(out, "0:a") == stream_md5(src, "0:a")
    assert stream_md5(out, "0:s") == stream_md5(src, "0:s")


@pytest.mark.slow
def test_resume_after_a_crash_gives_the_same_frames(clip, tmp_path):
    full = video.upscale_video(clip, tmp_path / "full.mp4", upscaler(), segment_frames=8, quiet=True)
    out = tmp_path / "resumed.mp4"

    def crash(k: int) -> None:
        if k == 2:
            raise RuntimeError("injected crash")

    with pytest.raises(RuntimeError, match="injected crash"):  # that crash, not an encoder error on the way
        video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True, on_segment=crash)
    assert not out.exists()
    work = tmp_path / ".resumed.mp4.esr-work"
    assert sorted(p.name for p in work.glob("segment_*")) == ["segment_00000.nut", "segment_00001.nut"]
    resumed = video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True)
    assert resumed.frames == full.frames == 29
    assert resumed.processed == 29 - 16 < full.processed
    assert frame_md5s(out) == frame_md5s(tmp_path / "full.mp4")


TORN = """\
[Parsed_showinfo_0 @ 0x7f10e0001b80] config in time_base: 1/30000, frame_rate: 30000/1001
[Parsed_showinfo_0 @ 0x7f10e0001b80] n:   0 pts:      0 pts_time:0       duration:   1001 duration_time:0.0333667 \
fmt:yuv420p cl:left sar:1/1 s:64x48 i:P iskey:1 type:I
[Parsed_showinfo_0 @ 0x7f10e0001b80] color_range:tv{report}
[Parsed_showinfo_0 @ 0x7f10e0001b80]  color_space:bt709 color_primaries:unknown color_trc:unknown
"""
REPORT = "frame=   18 fps=0.0 q=-1.0 q=-0.0 size=       2KiB time=00:00:00.53 bitrate=  24.7kbits/s speed= 177x    "


def test_colour_tags_are_read_from_one_whole_showinfo_line():
    """ffmpeg's progress report once landed inside the showinfo colour line (its main thread and the filter thread
    both log), so the probe read color_range "tvframe=" and every segment encoder failed on `-color_range
    tvframe=`. The probe now runs with -nostats, and a torn line is refused, never passed on."""
    whole = TORN.replace("{report}\n[Parsed_showinfo_0 @ 0x7f10e0001b80] ", "")
    assert ffmpeg._showinfo(whole)["color"] == {"color_range": "tv", "color_space": "bt709",
                                               "color_primaries": "unknown", "color_trc": "unknown"}
    with pytest.raises(EsrError, match="colour tags"):
        ffmpeg._showinfo(TORN.replace("{report}", REPORT))


def test_probe_reads_the_same_tags_every_time(clip):
    """Without -nostats about 1 probe in 15 of this clip came back torn on a 2-core machine."""
    for _ in range(25):
        assert ffmpeg.probe(clip).color == {"color_range": "tv", "color_space": "bt709",
                                           "color_primaries": "unknown", "color_trc": "unknown"}


@pytest.mark.parametrize("encoding, message", [
    (ffmpeg.Encoding(preset="nosuch"), r"libx264: Error setting preset/tune nosuch"),
    (ffmpeg.Encoding(ffmpeg_args=["-colorspace", "bt709frame="]), r"libx264: Error setting option colorspace to value bt709frame=")])
def test_encoder_errors_name_the_cause(clip, tmp_path, encoding, message):
    out = tmp_path / "bad.mp4"
    with pytest.raises(EsrError, match=f"^encoder failed: {message}") as err:
        video.upscale_video(clip, out, upscaler(), encoding=encoding, segment_frames=8, quiet=True)
    assert "\n" not in str(err.value) and "Error opening output files" not in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".bad.mp4.esr-work/*.nut"))


def test_other_options_refuse_to_resume(clip, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError):
        video.upscale_video(clip, out, upscaler(), segment_frames=8, quiet=True,
                            on_segment=lambda k: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(EsrError, match="--overwrite"):
        video.upscale_video(clip, out, upscaler(), encoding=ffmpeg.Encoding(crf=30), segment_frames=8, quiet=True)
    summary = video.upscale_video(clip, out, upscaler(), encoding=ffmpeg.Encoding(crf=30), segment_frames=8,
                                  quiet=True, overwrite=True)
    assert summary.processed == 29


def test_section_and_frames_dir(clip, tmp_path):
    folder = tmp_path / "frames"
    summary = video.upscale_video(clip, None, upscaler(), start=0.5, duration=0.2, frames_dir=folder, quiet=True)
    files = sorted(folder.glob("frame_*.png"))
    assert len(files) == summary.frames == 6
    from PIL import Image

    assert Image.open(files[0]).size == (128, 96)


def test_ten_bit_in_ten_bit_out(tmp_path):
    src = make_clip(tmp_path / "deep.mkv", "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=none",
                    "-c:a", "flac", "-shortest", seconds=0.4)
    assert ffmpeg.probe(src).bits == 16
    out = tmp_path / "deep_x2.mkv"
    video.upscale_video(src, out, upscaler(), encoding=ffmpeg.Encoding(codec="libx265", pix_fmt="yuv420p10le",
                                                                      ffmpeg_args=["-x265-params", "log-level=none"]),
                        quiet=True)
    assert ffmpeg.probe(out).pix_fmt == "yuv420p10le"


@pytest.mark.parametrize("content, message", [(b"not a video at all", "not a video"), (None, "no such file")])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, content, message):
    src = tmp_path / "bad.mp4"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(EsrError, match=message) as err:
        video.upscale_video(src, None, upscaler(), quiet=True)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bad.mp4"] if content else [])


def test_no_video_stream(tmp_path):
    src = tmp_path / "tone.m4a"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=0.3",
                    "-c:a", "aac", str(src)], check=True)
    with pytest.raises(EsrError, match="no video stream"):
        video.upscale_video(src, tmp_path / "x.mp4", upscaler(), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.m4a"]


def test_existing_output_needs_overwrite(clip, tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"x")
    with pytest.raises(EsrError, match="--overwrite"):
        video.upscale_video(clip, out, upscaler(), quiet=True)


def test_cudnn_times_its_kernels_once_for_the_frames_shape(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    seen = []

    class Recorder(TinyNet):
        def forward(self, x):
            seen.append(torch.backends.cudnn.benchmark)
            return super().forward(x)

    up = Upscaler(LoadedModel(Recorder(scale=2), tiny, TinyConfig(scale=2)))
    video.upscale_video(clip, None, up, duration=0.2, frames_dir=tmp_path / "f", quiet=True)
    assert seen and all(seen) and torch.backends.cudnn.benchmark is False
