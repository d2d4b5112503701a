"""The ffmpeg binary that imageio-ffmpeg ships: probing a source, decoding it to raw RGB frames, encoding segments.

Frames travel between processes as raw RGB: the decoder writes rgb24/rgb48le to a pipe and logs every frame's
pts (showinfo); each segment encoder reads IVF (a 32-byte header, then per frame: size, pts, pixels), the one
framing that carries per-frame timestamps with raw RGB into ffmpeg.
"""

from __future__ import annotations

import os
import queue
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import EsrError

MATRICES = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc",
            "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}
"""Source colour matrix (ffmpeg's tag name) -> the `scale` filter's name for the RGB -> YUV conversion."""


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise EsrError("esr video needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


# ---- probing -------------------------------------------------------------------------------------

@dataclass
class Probe:
    """What the pipeline needs to know about a source's first video stream."""

    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    fps: Fraction
    """The stream's frame rate as ffmpeg guesses it (r_frame_rate), exact: 30000/1001, not 29.97."""
    frames: int
    """Video packets in the selected section (= frames for all common codecs)."""
    duration: float
    """Seconds from the first frame to the end of the last one."""
    vfr: bool
    sar: str = "1/1"
    color: dict[str, str] = field(default_factory=dict)
    """color_range, color_space, color_primaries, color_trc as ffmpeg names them ("unknown" when untagged)."""
    streams: list[str] = field(default_factory=list)
    """Kind of every stream in order: video, audio, subtitle, data, attachment."""

    @property
    def bits(self) -> int:
        """8 or 16: the raw RGB depth the frames travel in."""
        deep = re.search(r"(9|10|12|14|16)(le|be)?$", self.pix_fmt) or self.pix_fmt.startswith(("p01", "p21", "p41"))
        return 16 if deep else 8

    def as_json(self) -> dict:
        return {**asdict(self), "time_base": str(self.time_base), "fps": str(self.fps)}


def probe(path: str | Path, start: float | None = None, duration: float | None = None) -> Probe:
    """Probe with ffmpeg alone (no ffprobe): the stream header, the first decoded frame (showinfo) and the
    packet list (framemd5 of a stream copy, cheap). EsrError for anything that is not a readable video.

    `-nostats` matters: ffmpeg's progress report is written by its main thread while the filter thread writes a
    showinfo line in several pieces, so the report could land inside the colour line ("color_range:tvframe=  18
    fps=..."), which then reached the encoder as `-color_range tvframe=`."""
    path = Path(path)
    if not path.is_file():
        raise EsrError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *section(start, duration), "-i", str(path),
           "-map", "0:V:0", "-c:v", "copy", "-f", "framemd5", "pipe:1",
           "-map", "0:V:0", "-vf", "showinfo=checksum=0", "-frames:v", "1", "-f", "null", "-"]
    run = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    log = run.stderr
    if run.returncode != 0 or "config in time_base" not in log:
        raise EsrError(f"{path}: {_probe_failure(log)}")
    info = _showinfo(log)
    pts, durations, tb = _packets(run.stdout)
    span = (pts[-1] + durations[-1] - pts[0]) * tb if pts else Fraction(0)
    steps = {b - a for a, b in zip(pts, pts[1:])}
    return Probe(width=info["w"], height=info["h"], pix_fmt=info["fmt"], time_base=info["tb"], fps=info["fps"],
                 frames=len(pts), duration=float(span), vfr=len(steps) > 1, sar=info["sar"], color=info["color"],
                 streams=re.findall(r"Stream #0:\d+\S*: (\w+):", log.split("Stream mapping:")[0]))


def section(start: float | None, duration: float | None) -> list[str]:
    return (["-ss", f"{start}"] if start else []) + (["-t", f"{duration}"] if duration else [])


def _probe_failure(log: str) -> str:
    if "matches no streams" in log or "does not contain any stream" in log:
        return "no video stream"
    if "Invalid data found" in log or "could not find codec parameters" in log.lower():
        return "not a video (or an unsupported format)"
    if "Decoder" in log and "not found" in log or "no decoder" in log.lower():
        return "unsupported video codec"
    if "Permission denied" in log:
        return "permission denied"
    return f"unreadable video ({ffmpeg_error(log.splitlines())})"


_GENERIC = re.compile(r"Error opening (output|input) files?\b|Error applying encoder options|Error while opening encoder|"
                      r"Error sending frames to consumers|Task finished with error code|Terminating thread with return|"
                      r"Could not open encoder before EOF|Nothing was written into output file|Conversion failed|"
                      r"Exiting with exit code|Error while filtering|Error marking filters as finished|"
                      r"Error (while )?(processing|decoding) (the )?stream|^frame=\s*\d+ fps=")


def ffmpeg_error(lines: list[str], default: str = "ffmpeg failed") -> str:
    """The line of an ffmpeg log that says what went wrong, on one line: the last one that is not one of the
    generic follow-ups ffmpeg prints after the cause ("Error opening output files: Invalid argument",
    "Conversion failed!"), with "[libx264 @ 0x55d0...]" shortened to "libx264:"."""
    lines = [ln.strip() for ln in lines if ln.strip()]
    useful = [ln for ln in lines if not _GENERIC.search(ln)] or lines
    if not useful:
        return default
    line = re.sub(r"\[(?:\w+#[\d:]+/)?([^\]@]+?) @ 0x[0-9a-f]+\] ", r"\1: ", useful[-1])
    return re.sub(r"\[(\w+) @ 0x[0-9a-f]+\] ", "", line)


COLOR_KEYS = ("color_range", "color_space", "color_primaries", "color_trc")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
"""How ffmpeg's colour names look (tv, bt709, smpte170m, iec61966-2-1, arib-std-b67, unknown)."""


def _showinfo(log: str) -> dict:
    tb, fps = re.search(r"config in time_base: (\d+/\d+), frame_rate: (\d+/\d+)", log).groups()
    lines = log.splitlines()
    first = next((i for i, ln in enumerate(lines) if re.search(r"\] n:\s*0 ", ln)), None)
    frame = re.search(r"\] n:\s*0 .*?fmt:(\S+) .*?sar:(\S+) s:(\d+)x(\d+)", lines[first]) if first is not None else None
    if not frame:
        raise EsrError("the first video frame cannot be decoded")
    fps = Fraction(fps) if fps != "0/1" else Fraction(0)
    return {"tb": Fraction(tb), "fps": fps, "fmt": frame[1], "sar": frame[2],
            "w": int(frame[3]), "h": int(frame[4]), "color": _colors(lines[first + 1:])}


def _colors(lines: list[str]) -> dict[str, str]:
    """The colour tags of the first frame: its showinfo colour line (the first one after its `n: 0` line), every
    value checked to be an ffmpeg name, so that no stray log text ever becomes an encoder option."""
    line = next((ln for ln in lines if re.search(r"\[Parsed_showinfo_\d+ @ [^\]]+\]\s+color_range:", ln)), None)
    if line is None:
        return {}
    color = dict(re.findall(r"(?<!\S)(color_\w+):(\S*)", line.split("]", 1)[1]))
    if set(COLOR_KEYS) - color.keys() or not all(_NAME.fullmatch(color[k]) for k in COLOR_KEYS):
        raise EsrError(f"cannot read the colour tags of the first frame: ffmpeg logged {line.strip()!r}")
    return {k: color[k] for k in COLOR_KEYS}


def _packets(framemd5: str) -> tuple[list[int], list[int], Fraction]:
    """Sorted packet pts, their durations, and the time base, from `-f framemd5` of a stream copy."""
    tb = re.search(r"#tb 0: (\d+/\d+)", framemd5)
    rows = [ln.split(",") for ln in framemd5.splitlines() if ln and not ln.startswith("#")]
    packets = sorted((int(r[2]), int(r[3])) for r in rows if len(r) >= 6)
    return [p for p, _ in packets], [d for _, d in packets], Fraction(tb[1]) if tb else Fraction(1)


def frame_timestamps(path: str | Path) -> list[Fraction]:
    """Presentation time (seconds, exact) of every decoded frame of the first video stream."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:V:0",
           "-vf", "showinfo=checksum=0", "-fps_mode", "passthrough", "-f", "null", "-"]
    log = subprocess.run(cmd, capture_output=True, text=True, errors="replace").stderr
    tb = Fraction(re.search(r"config in time_base: (\d+/\d+)", log)[1])
    return [int(p) * tb for p in re.findall(r"\] n:\s*\d+ pts:\s*(-?\d+)", log)]


# ---- decoding ------------------------------------------------------------------------------------

class Decoder:
    """An ffmpeg process writing raw RGB frames to a pipe; `frames()` yields (pts, (H, W, 3) array)."""

    def __init__(self, path: Path, info: Probe, first: int = 0, start: float | None = None,
                 duration: float | None = None):
        self.info, self.first = info, first
        self.dtype = np.dtype("<u2") if info.bits == 16 else np.dtype(np.uint8)
        fmt = "rgb48le" if info.bits == 16 else "rgb24"
        chain = f"select=gte(n\\,{first})," if first else ""
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *section(start, duration),
               "-i", str(path), "-map", "0:V:0", "-vf", f"{chain}showinfo=checksum=0,format={fmt}",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", fmt, "pipe:1"]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pts: queue.Queue = queue.Queue()
        self.time_base = info.time_base
        self.tail: list[str] = []
        self._log = threading.Thread(target=self._read_log, daemon=True, name="esr-ffmpeg-log")
        self._log.start()

    def _read_log(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode(errors="replace")
            if m := re.search(r"\] n:\s*\d+ pts:\s*(-?\d+)", line):
                self.pts.put(int(m[1]))
            elif m := re.search(r"config in time_base: (\d+/\d+)", line):
                self.time_base = Fraction(m[1])
            elif "Parsed_showinfo" not in line:
                self.tail = (self.tail + [line.strip()])[-20:]
        self.pts.put(None)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        w, h = self.info.width, self.info.height
        size = w * h * 3 * self.dtype.itemsize
        while True:
            data = self.process.stdout.read(size)
            if len(data) < size:
                break
            pts = self.pts.get()
            if pts is None:
                break
            yield pts, np.frombuffer(data, self.dtype).reshape(h, w, 3)
        if self.process.wait() != 0:
            self._log.join(5)
            raise EsrError(f"decoding failed: {ffmpeg_error(self.tail, 'ffmpeg exited with an error')}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


# ---- encoding ------------------------------------------------------------------------------------

@dataclass
class Encoding:
    """How segments are encoded; `ffmpeg_args` are appended to every segment encoder's output options."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = None
    pix_fmt: str = "yuv420p"
    ffmpeg_args: list[str] = field(default_factory=list)


def encoder_command(info: Probe, enc: Encoding, target: Path) -> list[str]:
    """ffmpeg reading IVF raw RGB on stdin, converting to YUV with the source's matrix, tagging its colours."""
    color = info.color
    if color.get("color_space") == "gbr" and not enc.pix_fmt.startswith(("rgb", "bgr", "gbr")):
        # an RGB source (PNG/FFV1/x264rgb) into a YUV format: convert with BT.709 and say so in the tags
        color = {**color, "color_space": "bt709", "color_range": "tv"}
    matrix = MATRICES.get(color.get("color_space", ""))
    full = color.get("color_range") == "pc"
    scale = f"scale=out_range={'full' if full else 'limited'}" + (f":out_color_matrix={matrix}" if matrix else "")
    sar = f",setsar={info.sar}" if info.sar != "0/1" else ""
    tags = []
    for option, key in (("-color_primaries", "color_primaries"), ("-color_trc", "color_trc"),
                        ("-colorspace", "color_space"), ("-color_range", "color_range")):
        if color.get(key, "unknown") not in ("unknown", "reserved"):
            tags += [option, "rgb" if color[key] == "gbr" else color[key]]  # ffprobe's name vs the option's
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-c:v", "rawvideo", "-f", "ivf", "-i", "pipe:0",
            "-vf", f"{scale}{sar},format={enc.pix_fmt}", "-fps_mode", "passthrough", "-enc_time_base", "demux",
            *codec_args(enc), *tags, *enc.ffmpeg_args, "-f", "nut", str(target)]


def codec_args(enc: Encoding) -> list[str]:
    rate = ["-crf", str(enc.crf)] + (["-b:v", "0"] if enc.codec.startswith("libvpx") else []) if enc.crf is not None else []
    return ["-c:v", enc.codec, *rate, *(["-preset", enc.preset] if enc.preset else []), "-pix_fmt", enc.pix_fmt]


def stream_maps(target: Path) -> list[str]:
    """What the final file takes from the source (input 1): audio, subtitles, attachments where the container
    holds them, chapters and metadata."""
    attachments = ["-map", "1:t?"] if target.suffix.lower() in (".mkv", ".mka") else []
    return ["-map", "0:v:0", "-map", "1:a?", "-map", "1:s?", *attachments, "-map_chapters", "1", "-map_metadata", "1"]


def check_output(source: Path, target: Path, enc: Encoding) -> None:
    """A one-frame rehearsal of the final file before any frame is decoded: the codec with its options, and the
    source's other streams copied, into `target`'s container. EsrError naming the cause (an extension ffmpeg does
    not know, a container that cannot hold AAC, a bad encoder option)."""
    rehearsal = target.with_name(f".{target.stem}.esr-check{target.suffix}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "color=size=64x64:rate=25:duration=0.04", "-i", str(source), *stream_maps(target),
           "-c", "copy", *codec_args(enc), *enc.ffmpeg_args, "-t", "0.04", str(rehearsal)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    finally:
        rehearsal.unlink(missing_ok=True)
    if run.returncode != 0:
        last = ffmpeg_error(run.stderr.splitlines()).replace(str(rehearsal), str(target))
        if last.startswith(f"{enc.codec}:"):  # the encoder refused its options, as a segment encoder would say
            raise EsrError(f"encoder failed: {last}")
        raise EsrError(f"{target}: cannot write {enc.codec} video and the streams of {source.name} into "
                       f"{target.suffix or 'a file without extension'} ({last}); try another output extension such "
                       "as .mkv, or other --codec/--pix-fmt/--ffmpeg-arg")


def ivf_header(width: int, height: int, bits: int, time_base: Fraction) -> bytes:
    fourcc = b"RGB0" if bits == 16 else b"RGB\x18"  # ffmpeg's raw tags: RGB+48 = rgb48le, RGB+24 = rgb24
    return b"DKIF" + struct.pack("<HH4sHHIII", 0, 32, fourcc, width, height,
                                 time_base.denominator, time_base.numerator, 0) + bytes(4)


class SegmentEncoder:
    """One ffmpeg encoder process fed raw frames; `finish()` waits and renames the file into place. Its stderr is
    drained by a thread (ffmpeg must never block on a full stderr pipe while we block writing its stdin) and the
    lines are kept for the error message."""

    def __init__(self, target: Path, info: Probe, enc: Encoding, size: tuple[int, int], time_base: Fraction):
        self.target, self.part = target, target.with_name(target.name + ".part.nut")
        self.frames, self.first_pts = 0, None
        self.log: list[str] = []
        self.process = subprocess.Popen(encoder_command(info, enc, self.part), stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._log = threading.Thread(target=self._read_log, daemon=True, name="esr-ffmpeg-encode-log")
        self._log.start()
        try:
            self.process.stdin.write(ivf_header(*size, info.bits, time_base))
        except BrokenPipeError:
            raise EsrError(f"encoder failed: {self._error()}") from None

    def _read_log(self) -> None:
        for raw in self.process.stderr:
            self.log = (self.log + [raw.decode(errors="replace").rstrip()])[-50:]

    def write(self, pts: int, pixels: np.ndarray) -> None:
        data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
        try:
            self.process.stdin.write(struct.pack("<IQ", len(data), pts & (2 ** 64 - 1)) + data)
        except BrokenPipeError:
            raise EsrError(f"encoder failed: {self._error()}") from None
        self.first_pts = pts if self.first_pts is None else self.first_pts
        self.frames += 1

    def finish(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        if self.process.wait() != 0:
            self.part.unlink(missing_ok=True)
            raise EsrError(f"encoder failed: {self._error()}")
        self._log.join(5)
        os.replace(self.part, self.target)

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.part.unlink(missing_ok=True)

    def _error(self) -> str:
        if self.process.poll() is None:  # it stopped reading but lives on: nothing more is coming
            self.process.kill()
        status = self.process.wait()
        self._log.join(5)
        return ffmpeg_error(self.log, f"ffmpeg exited with status {status}")


def count_frames(path: Path) -> int:
    """Video packets in a file (a segment we wrote: one packet per frame)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
           "-f", "framemd5", "pipe:1"]
    run = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    return len(_packets(run.stdout)[0]) if run.returncode == 0 else -1
