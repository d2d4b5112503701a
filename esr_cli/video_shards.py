"""One video shared by the shards of a run (`esr_cli.sharding`): each shard encodes a contiguous block of the
segments (one decoder per shard) into the common work folder and records each segment in a file of its own, so no
two shards ever write the same file. The shard that finishes last, finding every segment recorded under the work
folder's lock, muxes once and removes the folder. A shard that died leaves its complete segments behind: running it
again (or the whole job, with any number of shards) completes the output.

How many frames the video has is known for sure only once a decoder has seen the end: the shard whose decoder runs
out writes `end_NNNNNNNNN`, and a segment shorter than the others also says where the video ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import EsrError
from .ffmpeg import Decoder, Encoding, Probe, count_frames
from .sharding import Shard, block, locked
from .video import FramesSink, SegmentSink, VideoSummary, WorkDir, _run, mux


class SharedWorkDir(WorkDir):
    """The work folder of a sharded run: `segment_NNNNN.nut` with its record `segment_NNNNN.json`, written by the
    shard that encoded it; manifest.json holds the fingerprint only."""

    def __init__(self, target: Path, fingerprint: dict, segment_frames: int):
        super().__init__(target, fingerprint)
        self.segment_frames = segment_frames
        self.next = 0

    @property
    def next_index(self) -> int:
        return self.next

    def open(self) -> None:
        """Create the folder, or check that it holds an unfinished run with the same input and options."""
        if self.manifest.is_file():
            if json.loads(self.manifest.read_text()).get("fingerprint") != self.fingerprint:
                raise EsrError(f"{self.path} holds an unfinished run with another input or other options: "
                               "delete it to start again")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.save()  # every shard writes the same bytes, atomically

    def record(self, index: int) -> Path:
        return self.path / f"segment_{index:05d}.json"

    def records(self) -> dict[int, dict]:
        found = {}
        for path in self.path.glob("segment_*.json"):
            try:
                found[int(path.stem.split("_")[1])] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return found

    def done(self, index: int) -> bool:
        """Whether segment `index` is recorded and its file holds the frames its record says."""
        try:
            rec = json.loads(self.record(index).read_text())
        except (OSError, ValueError):
            return False
        return count_frames(self.path / rec["file"]) == rec["frames"]

    def add(self, file: Path, frames: int, first_pts: int) -> None:
        from .images import atomic_write

        atomic_write(self.record(self.next), json.dumps({"file": file.name, "frames": frames,
                                                         "first_pts": first_pts}).encode())
        self.next += 1

    def report_end(self, frames: int) -> None:
        from .images import atomic_write

        atomic_write(self.path / f"end_{frames:09d}", b"")

    def end(self, records: dict[int, dict]) -> int | None:
        """Frames in the video, once some shard has seen where it ends."""
        seen = [int(p.name[4:]) for p in self.path.glob("end_*") if p.name[4:].isdigit()]
        seen += [k * self.segment_frames + r["frames"] for k, r in records.items() if r["frames"] < self.segment_frames]
        return min(seen, default=None)


def upscale_share(source: Path, out: Path, info: Probe, upscaler, shard: Shard, encoding: Encoding,
                  fingerprint: dict | None, start: float | None, duration: float | None, frames_dir: bool,
                  segment_frames: int, overwrite: bool, quiet: bool, on_segment) -> VideoSummary:
    """This shard's block of segments (PNG frames into `out` with `frames_dir`), then the mux if it is the last."""
    count = -(-info.frames // segment_frames)
    mine = block(count, shard)
    last = shard.index == shard.count - 1
    summary = VideoSummary(out)
    if frames_dir:
        k = mine.start
        while not overwrite and k < mine.stop and _frames_exist(out, k, segment_frames, info.frames):
            k += 1
        if k < mine.stop or last:
            sink = FramesSink(out, k * segment_frames)
            summary.processed = _decode(source, info, upscaler, sink, k, mine.stop, last, start, duration,
                                        segment_frames, quiet, shard)
        summary.frames = summary.processed
        return summary
    if overwrite:
        raise EsrError("--overwrite with shards would let each shard discard the others' segments: delete the "
                       f"output and {out.parent / f'.{out.name}.esr-work'} first")
    work = SharedWorkDir(out, fingerprint, segment_frames)
    work.open()
    k = mine.start
    while k < mine.stop and work.done(k):
        k += 1
    if k < mine.stop or (last and work.end(work.records()) is None):
        for j in range(k, max(k + 1, mine.stop)):
            work.segment_path(j).with_name(work.segment_path(j).name + ".part.nut").unlink(missing_ok=True)
        work.next = k
        size = (info.width * upscaler.scale, info.height * upscaler.scale)
        sink = SegmentSink(work, info, encoding, size, info.time_base, segment_frames, on_segment)
        summary.processed = _decode(source, info, upscaler, sink, k, mine.stop, last, start, duration, segment_frames,
                                    quiet, shard, work)
    summary.frames = summary.processed
    summary.frames, summary.waiting = finish(work, source, out, info, start, duration, summary.processed)
    return summary


def _decode(source: Path, info: Probe, upscaler, sink, k: int, stop: int, last: bool, start, duration,
            segment_frames: int, quiet: bool, shard: Shard, work: SharedWorkDir | None = None) -> int:
    """Frames from segment k up to segment `stop` (the last shard: to the end); reports the end when it is seen."""
    first = k * segment_frames
    limit = None if last else (stop - k) * segment_frames
    decoder = Decoder(source, info, first, start, duration)
    done = _run(decoder, upscaler, sink, info, first, segment_frames, quiet, limit, desc=shard.label)
    if work is not None and (limit is None or done < limit):
        work.report_end(first + done)
    return done


def _frames_exist(folder: Path, k: int, segment_frames: int, frames: int) -> bool:
    return all((folder / f"frame_{i:06d}.png").is_file()
               for i in range(k * segment_frames, min((k + 1) * segment_frames, frames)))


def finish(work: SharedWorkDir, source: Path, target: Path, info: Probe, start, duration,
           processed: int) -> tuple[int, bool]:
    """Under the work folder's lock: mux once every segment is recorded (the folder goes with it). Returns (frames
    in the output, False) when the output exists, else (frames this shard did, True: waiting for other shards)."""
    try:
        with locked(work.path / "mux.lock"):
            if not work.manifest.is_file():  # another shard muxed meanwhile
                return processed, False
            records = work.records()
            end = work.end(records)
            needed = range(-(-end // work.segment_frames)) if end is not None else None
            if needed is None or any(k not in records for k in needed):
                return processed, True
            work.segments = [records[k] for k in needed]
            mux(work, source, target, info.time_base, start, duration)
            shutil.rmtree(work.path, ignore_errors=True)
            return end, False
    except FileNotFoundError:  # the folder is gone: muxed by another shard
        if not target.is_file():
            raise
        return processed, False
