"""Upscaling videos with the ffmpeg binary that imageio-ffmpeg ships: probe, then decode -> engine -> encode in
resumable segments, then one stream-copy mux that keeps audio, subtitles, attachments, chapters, metadata,
the frame timestamps (variable frame rate included) and the colour tags of the source.

Frames travel between processes as raw RGB: the decoder writes rgb24/rgb48le to a pipe and logs every frame's
pts (showinfo); each segment encoder reads IVF (a 32-byte header, then per frame: size, pts, pixels), the one
framing that carries per-frame timestamps with raw RGB into ffmpeg.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import EsrError

SEGMENT_FRAMES = 120
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
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *_section(start, duration), "-i", str(path),
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


def _section(start: float | None, duration: float | None) -> list[str]:
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
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *_section(start, duration),
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
    matrix = MATRICES.get(color.get("color_space", ""))
    full = color.get("color_range") == "pc"
    scale = f"scale=out_range={'full' if full else 'limited'}" + (f":out_color_matrix={matrix}" if matrix else "")
    sar = f",setsar={info.sar}" if info.sar != "0/1" else ""
    tags = []
    for option, key in (("-color_primaries", "color_primaries"), ("-color_trc", "color_trc"),
                        ("-colorspace", "color_space"), ("-color_range", "color_range")):
        if color.get(key, "unknown") not in ("unknown", "reserved"):
            tags += [option, color[key]]
    rate = ["-crf", str(enc.crf)] + (["-b:v", "0"] if enc.codec.startswith("libvpx") else []) if enc.crf is not None else []
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-c:v", "rawvideo", "-f", "ivf", "-i", "pipe:0",
            "-vf", f"{scale}{sar},format={enc.pix_fmt}", "-fps_mode", "passthrough", "-enc_time_base", "demux",
            "-c:v", enc.codec, *rate, *(["-preset", enc.preset] if enc.preset else []), "-pix_fmt", enc.pix_fmt,
            *tags, *enc.ffmpeg_args, "-f", "nut", str(target)]


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


# ---- the work directory: segments and their manifest --------------------------------------------

class WorkDir:
    """`.<output name>.esr-work/` beside the output: segment files plus manifest.json naming the complete ones."""

    def __init__(self, target: Path, fingerprint: dict):
        self.path = target.parent / f".{target.name}.esr-work"
        self.manifest = self.path / "manifest.json"
        self.fingerprint = fingerprint
        self.segments: list[dict] = []
        self.complete = False

    def resume(self, overwrite: bool) -> int:
        """Keep the complete segments of an earlier identical run; return how many frames they hold."""
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        if self.manifest.is_file():
            saved = json.loads(self.manifest.read_text())
            if saved.get("fingerprint") != self.fingerprint:
                raise EsrError(f"{self.path} holds an unfinished run with another input or other options: "
                               "pass --overwrite to start again")
            for seg in saved["segments"]:
                if count_frames(self.path / seg["file"]) != seg["frames"]:
                    break  # missing or damaged: redo from here on
                self.segments.append(seg)
            self.complete = saved.get("complete", False) and len(self.segments) == len(saved["segments"])
        self.path.mkdir(parents=True, exist_ok=True)
        for stray in self.path.glob("*.part.nut"):
            stray.unlink()
        self.save()
        return self.frames

    @property
    def frames(self) -> int:
        return sum(seg["frames"] for seg in self.segments)

    def segment_path(self, index: int) -> Path:
        return self.path / f"segment_{index:05d}.nut"

    def add(self, file: Path, frames: int, first_pts: int) -> None:
        self.segments.append({"file": file.name, "frames": frames, "first_pts": first_pts})
        self.save()

    def save(self) -> None:
        from .images import atomic_write

        state = {"fingerprint": self.fingerprint, "segments": self.segments, "complete": self.complete}
        atomic_write(self.manifest, json.dumps(state, indent=1).encode())

    def concat_list(self, time_base: Fraction) -> Path:
        """ffconcat of the segments (each encoded with timestamps from 0) with durations in whole microseconds, as
        the concat demuxer counts: segment k then starts exactly at its first frame's time relative to the first."""
        lines = ["ffconcat version 1.0"]
        starts = [_microseconds((seg["first_pts"] - self.segments[0]["first_pts"]) * time_base) for seg in self.segments]
        for k, seg in enumerate(self.segments):
            lines.append(f"file '{seg['file']}'")
            if k + 1 < len(starts):
                lines.append(f"duration {_seconds(starts[k + 1] - starts[k])}")
        path = self.path / "segments.ffconcat"
        path.write_text("\n".join(lines) + "\n")
        return path


def _microseconds(t: Fraction) -> int:
    return int((t * 1_000_000 + Fraction(1, 2)) // 1)


def _seconds(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def mux(work: WorkDir, source: Path, target: Path, time_base: Fraction, start: float | None = None,
        duration: float | None = None) -> None:
    """Concatenate the segments and copy every audio/subtitle/attachment stream, the chapters and the metadata
    of the source beside them (no re-encoding), into a temporary name renamed to `target` when complete."""
    part = target.with_name(f".{target.stem}.esr-part{target.suffix}")
    attachments = ["-map", "1:t?"] if target.suffix.lower() in (".mkv", ".mka") else []
    faststart = ["-movflags", "+faststart"] if target.suffix.lower() in (".mp4", ".mov", ".m4v") else []
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-itsoffset", _seconds(_microseconds(work.segments[0]["first_pts"] * time_base)),
           "-f", "concat", "-safe", "0", "-i", str(work.concat_list(time_base)), *_section(start, duration),
           "-i", str(source), "-map", "0:v:0", "-map", "1:a?", "-map", "1:s?", *attachments,
           "-map_chapters", "1", "-map_metadata", "1", "-c", "copy", *faststart, str(part)]
    run = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if run.returncode != 0:
        part.unlink(missing_ok=True)
        last = ffmpeg_error(run.stderr.splitlines())
        raise EsrError(f"{target}: cannot mux the streams of {source.name} into {target.suffix or 'this'} "
                       f"container ({last}); try another output extension such as .mkv")
    os.replace(part, target)


# ---- the pipeline --------------------------------------------------------------------------------

@dataclass
class VideoSummary:
    output: Path
    frames: int = 0
    """Frames in the output."""
    processed: int = 0
    """Frames upscaled by this run (fewer than `frames` after a resume)."""
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        resumed = f" ({self.frames - self.processed} reused from an earlier run)" if self.processed < self.frames else ""
        return f"{self.frames} frames{resumed} in {self.seconds:.1f} s ({self.fps:.2f} frames/s) -> {self.output}"


Batch = tuple[list[int], np.ndarray]
"""(pts of each frame, (N, H, W, 3) uint8/uint16 pixels)."""


class SegmentSink:
    """Receives upscaled batches and cuts them into segments of `segment_frames`, each recorded when complete."""

    def __init__(self, work: WorkDir, info: Probe, enc: Encoding, size: tuple[int, int], time_base: Fraction,
                 segment_frames: int, on_segment: Callable[[int], None] | None = None):
        self.work, self.info, self.enc, self.size, self.time_base = work, info, enc, size, time_base
        self.segment_frames, self.on_segment = segment_frames, on_segment
        self.encoder: SegmentEncoder | None = None

    def __call__(self, batch: Batch) -> None:
        for pts, pixels in zip(*batch):
            if self.encoder is None:
                target = self.work.segment_path(len(self.work.segments))
                self.encoder = SegmentEncoder(target, self.info, self.enc, self.size, self.time_base)
            self.encoder.write(pts, pixels)
            if self.encoder.frames == self.segment_frames:
                self._finish()

    def _finish(self) -> None:
        encoder, self.encoder = self.encoder, None
        encoder.finish()
        self.work.add(encoder.target, encoder.frames, encoder.first_pts)
        if self.on_segment:
            self.on_segment(len(self.work.segments))

    def close(self) -> None:
        if self.encoder is not None:
            self._finish()

    def abort(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()


class FramesSink:
    """Writes every upscaled frame as `frame_NNNNNN.png` (atomically) into a folder."""

    def __init__(self, folder: Path, first: int):
        self.folder, self.index = folder, first
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: Batch) -> None:
        from .images import Picture, write_image

        for pixels in batch[1]:
            write_image(self.folder / f"frame_{self.index:06d}.png", Picture(np.ascontiguousarray(pixels)))
            self.index += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _batches(frames: Iterator[tuple[int, np.ndarray]], size: int, segment_frames: int, first: int) -> Iterator[Batch]:
    """Group frames into batches of `size` that never straddle a segment boundary (so a resumed run batches the
    same frames together and gives bit-identical output)."""
    pts, pixels, index = [], [], first
    for p, a in frames:
        pts.append(p)
        pixels.append(a)
        index += 1
        if len(pts) == size or index % segment_frames == 0:
            yield pts, np.stack(pixels)
            pts, pixels = [], []
    if pts:
        yield pts, np.stack(pixels)


_DONE = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _read(batches: Callable[[], Iterator[Batch]], target: queue.Queue, stop: threading.Event) -> None:
    """Decode thread: batches into `target`, then _DONE (or the exception that stopped it)."""
    try:
        for item in batches():
            if stop.is_set():
                return
            _put(target, item, stop)
        _put(target, _DONE, stop)
    except BaseException as e:  # noqa: BLE001 (handed to the main thread, in order)
        _put(target, e, stop)


def _write(source: queue.Queue, sink: Callable[[Batch], None], failed: list, stop: threading.Event) -> None:
    """Encode thread: every batch of `source` into the sink; an error is kept in `failed` and stops the run."""
    try:
        for item in _drain(source, stop):
            sink(item)
    except BaseException as e:  # noqa: BLE001
        failed.append(e)
        stop.set()


def _drain(q: queue.Queue, stop: threading.Event) -> Iterator:
    """Items of `q` up to _DONE; raises an exception put there; ends early once `stop` is set."""
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def run_pipeline(batches: Callable[[], Iterator[Batch]], upscale: Callable[[np.ndarray], np.ndarray],
                 sink: Callable[[Batch], None], depth: int = 2) -> int:
    """decode thread -> bounded queue -> `upscale` here -> bounded queue -> encode thread; returns frames done."""
    stop, failed = threading.Event(), []
    decoded, upscaled = queue.Queue(depth), queue.Queue(depth)
    reader = threading.Thread(target=_read, args=(batches, decoded, stop), daemon=True, name="esr-decode")
    writer = threading.Thread(target=_write, args=(upscaled, sink, failed, stop), daemon=True, name="esr-encode")
    reader.start()
    writer.start()
    done = 0
    try:
        for pts, pixels in _drain(decoded, stop):
            _put(upscaled, (pts, upscale(pixels)), stop)
            done += len(pts)
        _put(upscaled, _DONE, stop)
        writer.join()
    finally:
        stop.set()
        reader.join(5)
        writer.join(5)
    if failed:
        raise failed[0]
    return done


def default_output(source: str | Path, scale: int) -> Path:
    source = Path(source)
    return source.with_name(f"{source.stem}_x{scale}{source.suffix or '.mp4'}")


def upscale_video(source: str | Path, target: str | Path | None, upscaler, encoding: Encoding | None = None,
                  start: float | None = None, duration: float | None = None, frames_dir: str | Path | None = None,
                  segment_frames: int = SEGMENT_FRAMES, overwrite: bool = False, quiet: bool = False,
                  on_segment: Callable[[int], None] | None = None) -> VideoSummary:
    """Upscale a video file with an Upscaler into `target` (or PNG frames into `frames_dir`), resuming an
    interrupted identical run from its last complete segment. `on_segment(k)` is called after segment k."""
    source, encoding = Path(source), encoding or Encoding()
    target = Path(target) if target else default_output(source, upscaler.scale)
    out = Path(frames_dir) if frames_dir else target
    if out.resolve() == source.resolve():
        raise EsrError(f"{out}: the output would overwrite the input")
    if not frames_dir and target.exists() and not overwrite:
        raise EsrError(f"{target} exists: pass --overwrite to replace it")
    info = probe(source, start, duration)  # before anything is written: a bad input leaves nothing behind
    clock = time.perf_counter()
    if frames_dir:
        first = 0 if overwrite else _existing_frames(out)
        sink = FramesSink(out, first)
        work = None
    else:
        work = WorkDir(target, _fingerprint(source, info, upscaler, encoding, start, duration, segment_frames))
        first = work.resume(overwrite)
    summary = VideoSummary(out, processed=0)
    if not (work and work.complete):
        decoder = Decoder(source, info, first, start, duration)
        if work:
            sink = SegmentSink(work, info, encoding, (info.width * upscaler.scale, info.height * upscaler.scale),
                               info.time_base, segment_frames, on_segment)
        summary.processed = _run(decoder, upscaler, sink, info, first, segment_frames, quiet)
        if work:
            work.complete = True
            work.save()
    summary.frames = first + summary.processed
    if work:
        mux(work, source, target, info.time_base, start, duration)
        shutil.rmtree(work.path, ignore_errors=True)
    summary.seconds = time.perf_counter() - clock
    return summary


def _run(decoder: Decoder, upscaler, sink, info: Probe, first: int, segment_frames: int, quiet: bool) -> int:
    """Decoder -> engine -> sink with a progress bar; on any error or interrupt the processes are stopped and
    the unfinished segment deleted (complete segments stay for the next run)."""
    import torch
    from tqdm import tqdm

    from .images import quantize

    bar = tqdm(total=max(info.frames, first), initial=first, unit="frame", dynamic_ncols=True,
               disable=quiet or not sys.stderr.isatty())
    peak = 65535.0 if info.bits == 16 else 255.0

    def upscale(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels.astype(np.float32) / peak).permute(0, 3, 1, 2)
        y = quantize(upscaler.upscale(x), info.bits)
        bar.update(len(pixels))
        return y

    try:
        done = run_pipeline(lambda: _batches(decoder.frames(), upscaler.batch_size, segment_frames, first),
                            upscale, sink)
        sink.close()
        return done
    except BaseException:
        sink.abort()
        raise
    finally:
        decoder.close()
        bar.close()


def _existing_frames(folder: Path) -> int:
    n = 0
    while (folder / f"frame_{n:06d}.png").is_file():
        n += 1
    return n


def _fingerprint(source: Path, info: Probe, upscaler, enc: Encoding, start, duration, segment_frames) -> dict:
    """What must be equal for a run to continue another's segments."""
    stat = source.stat()
    return {"input": {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                      "probe": info.as_json()},
            "model": {"name": upscaler.name, "scale": upscaler.scale, "precision": upscaler.model.precision,
                      "tile": upscaler.tile, "tile_overlap": upscaler.tile_overlap},
            "encoding": asdict(enc), "start": start, "duration": duration, "segment_frames": segment_frames,
            "batch_size": upscaler.batch_size}
