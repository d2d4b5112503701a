"""Upscaling videos: probe, then decode -> engine -> encode in resumable segments kept in a work folder, then one
stream-copy mux that keeps audio, subtitles, attachments, chapters, metadata, the frame timestamps (variable frame
rate included) and the colour tags of the source. The ffmpeg processes are `esr_cli.ffmpeg`'s."""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import EsrError
from .ffmpeg import (Decoder, Encoding, Probe, SegmentEncoder, check_output, count_frames, ffmpeg_error, ffmpeg_exe,
                     probe, section, stream_maps)
from .images import writable_folder

SEGMENT_FRAMES = 120
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

    @property
    def next_index(self) -> int:
        """Number of the next segment to write."""
        return len(self.segments)

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
    faststart = ["-movflags", "+faststart"] if target.suffix.lower() in (".mp4", ".mov", ".m4v") else []
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-itsoffset", _seconds(_microseconds(work.segments[0]["first_pts"] * time_base)),
           "-f", "concat", "-safe", "0", "-i", str(work.concat_list(time_base)), *section(start, duration),
           "-i", str(source), *stream_maps(target), "-c", "copy", *faststart, str(part)]
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
    waiting: bool = False
    """A shard that finished its segments while others still run: the last one to finish writes the output."""

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        if self.waiting:
            return f"{self.processed} frames of {self.output} done; the last shard to finish writes it"
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
                target = self.work.segment_path(self.work.next_index)
                self.encoder = SegmentEncoder(target, self.info, self.enc, self.size, self.time_base)
            self.encoder.write(pts, pixels)
            if self.encoder.frames == self.segment_frames:
                self._finish()

    def _finish(self) -> None:
        encoder, self.encoder = self.encoder, None
        encoder.finish()
        self.work.add(encoder.target, encoder.frames, encoder.first_pts)
        if self.on_segment:
            self.on_segment(self.work.next_index)

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
                  on_segment: Callable[[int], None] | None = None, shard=None) -> VideoSummary:
    """Upscale a video file with an Upscaler into `target` (or PNG frames into `frames_dir`), resuming an
    interrupted identical run from its last complete segment. `on_segment(k)` is called after segment k.
    `shard` (an `esr_cli.sharding.Shard`): only its share of the segments, the last shard to finish muxes
    (`esr_cli.video_shards`)."""
    source, encoding = Path(source), encoding or Encoding()
    target = Path(target) if target else default_output(source, upscaler.scale)
    if target.is_dir():  # -o FOLDER: the default name inside it
        target = target / default_output(source, upscaler.scale).name
    out = Path(frames_dir) if frames_dir else target
    if out.resolve() == source.resolve():
        raise EsrError(f"{out}: the output would overwrite the input")
    if not frames_dir and target.exists() and not overwrite:
        raise EsrError(f"{target} exists: pass --overwrite to replace it")
    info = probe(source, start, duration)  # before anything is written: a bad input leaves nothing behind
    if not frames_dir:
        writable_folder(target.parent)
        check_output(source, target, encoding)  # codec, its options and the container, before a frame is decoded
    clock = time.perf_counter()
    if shard is not None and shard.sharded:
        from .video_shards import upscale_share

        fingerprint = None if frames_dir else _fingerprint(source, info, upscaler, encoding, start, duration,
                                                               segment_frames)
        summary = upscale_share(source, out, info, upscaler, shard, encoding, fingerprint, start, duration,
                                bool(frames_dir), segment_frames, overwrite, quiet, on_segment)
        summary.seconds = time.perf_counter() - clock
        return summary
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
        try:
            summary.processed = _run(decoder, upscaler, sink, info, first, segment_frames, quiet)
        except BaseException:
            if work and not work.segments:  # nothing a rerun could reuse
                shutil.rmtree(work.path, ignore_errors=True)
            raise
        if work:
            work.complete = True
            work.save()
    summary.frames = first + summary.processed
    if work:
        mux(work, source, target, info.time_base, start, duration)
        shutil.rmtree(work.path, ignore_errors=True)
    summary.seconds = time.perf_counter() - clock
    return summary


def _run(decoder: Decoder, upscaler, sink, info: Probe, first: int, segment_frames: int, quiet: bool,
         limit: int | None = None, desc: str | None = None) -> int:
    """Decoder -> engine -> sink with a progress bar; on any error or interrupt the processes are stopped and
    the unfinished segment deleted (complete segments stay for the next run). `limit`: at most so many frames."""
    import torch
    from tqdm import tqdm

    from .engine import cudnn_benchmark

    bar = tqdm(total=max(info.frames, first) if limit is None else limit, initial=first if limit is None else 0,
               unit="frame", desc=desc, dynamic_ncols=True, disable=quiet or not sys.stderr.isatty())

    def upscale(pixels: np.ndarray) -> np.ndarray:  # levels in, levels out: the float frames live on the device
        y = upscaler.upscale_levels(torch.from_numpy(pixels).permute(0, 3, 1, 2), info.bits)
        bar.update(len(pixels))
        return y

    try:
        frames = (lambda: decoder.frames()) if limit is None else (lambda: itertools.islice(decoder.frames(), limit))
        with cudnn_benchmark():  # every frame has the same shape
            done = run_pipeline(lambda: _batches(frames(), upscaler.batch_size, segment_frames, first), upscale, sink)
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
