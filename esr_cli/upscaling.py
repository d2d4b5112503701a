"""Upscaling image files: one image (`upscale_image`) or a batch of files and folders (`upscale_files`).

Decoding of the next images and encoding of the previous ones run in background threads while the network
runs; every output is written to a temporary file and renamed.
"""

from __future__ import annotations

import glob
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


from . import DEFAULT_MODEL
from .engine import Upscaler
from .errors import EsrError, first_line, shown
from .images import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, Exists, Picture, from_planes, header_pixels, quantize,
                     read_image, remove_stale_parts, to_batch, write_image)

DEFAULT_TEMPLATE = "{stem}_x{scale}.{ext}"
FIELDS = ("stem", "scale", "ext", "model")
"""The fields a name template may use, as plain names: a template is data, never code."""


def check_template(template: str) -> str:
    """The template, or EsrError naming what is wrong: unknown or indexed fields, braces, an empty name, a path."""
    import string

    if not template.strip():
        raise EsrError("--name is empty: give a template such as '{stem}_x{scale}.{ext}'")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise EsrError(f"--name {template!r}: {e} (write a literal brace as {{{{ or }}}})") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in FIELDS or spec or conversion:
            raise EsrError(f"--name {template!r}: {{{field_name}}} is not a field; use {', '.join('{%s}' % f for f in FIELDS)}")
    if "/" in template or "\\" in template or template in (".", "..") or Path(template).is_absolute():
        raise EsrError(f"--name {template!r}: a name, not a path (outputs go into -o, mirroring input folders)")
    return template


@dataclass
class Job:
    source: Path
    target: Path


@dataclass
class Summary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0
    """Output megapixels written."""

    @property
    def mpx_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{len(self.written)} written, {len(self.skipped)} skipped, {len(self.failed)} failed "
                f"in {self.seconds:.1f} s ({self.mpx_per_s:.2f} output Mpx/s)")

    @classmethod
    def merge(cls, parts: list[Summary]) -> Summary:
        """The summary of several shards that ran at the same time: their files, the longest time."""
        return cls([p for s in parts for p in s.written], [p for s in parts for p in s.skipped],
                   [f for s in parts for f in s.failed], max((s.seconds for s in parts), default=0.0),
                   sum(s.megapixels for s in parts))


def expand_inputs(inputs: Iterable[str | Path], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for files, folders (image files inside) and globs."""
    found: list[tuple[Path, Path]] = []
    for item in map(str, inputs):
        paths = [Path(p) for p in sorted(glob.glob(item, recursive=recursive))] if glob.has_magic(item) else [Path(item)]
        if not paths:
            raise EsrError(f"{item}: no file matches")
        for path in paths:
            if path.is_dir():
                pattern = "**/*" if recursive else "*"
                found += [(f, f.relative_to(path)) for f in sorted(path.glob(pattern))
                          if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
            else:
                found.append((path, Path(path.name)))
    return found


def plan(inputs: Iterable[str | Path], out_dir: str | Path | None, scale: int, template: str = DEFAULT_TEMPLATE,
         fmt: str = "same", recursive: bool = False, model: str = "") -> list[Job]:
    """One output path per input: `out_dir/<relative folder>/<template>`. Files that are outputs of other inputs
    of the same plan (a rerun beside the inputs) are not inputs."""
    check_template(template)
    model = Path(model).stem if ("/" in model or "\\" in model or Path(model).suffix) else model
    jobs = []
    for source, rel in expand_inputs(inputs, recursive):
        ext = source.suffix.lower().lstrip(".") if fmt == "same" else fmt
        ext = "jpg" if ext == "jpeg" else "tif" if ext == "tiff" else ext
        name = template.format(stem=source.stem, scale=scale, ext=ext or "png", model=model)
        if "/" in name or "\\" in name or name in (".", ".."):
            raise EsrError(f"--name: {shown(name)!r} (from {shown(source.name)}) is not a plain file name")
        folder = Path(out_dir) / rel.parent if out_dir is not None else source.parent
        jobs.append(Job(source, folder / name))
    targets = {j.target.resolve() for j in jobs}
    jobs = [j for j in jobs if j.source.resolve() not in targets]
    targets = [j.target for j in jobs]
    if len(set(targets)) != len(targets):
        dup = next(t for t in targets if targets.count(t) > 1)
        raise EsrError(f"two inputs would both be written to {dup}: use --recursive or a name template with more fields")
    return jobs


def shard_jobs(jobs: list[Job], shard) -> list[Job]:
    """This shard's jobs (an `esr_cli.sharding.Shard`): the planned outputs split balanced by input pixels. The
    split is over the whole plan, existing outputs included, so every rerun of a shard gets the same share."""
    from .sharding import share

    return share(jobs, [header_pixels(j.source) for j in jobs], shard) if shard.sharded else jobs


def upscale_shard(jobs: list[Job], upscaler: Upscaler, shard, **options) -> tuple[Summary, bool]:
    """`upscale_files` on this shard's jobs, with its progress bar labelled; then (summary of every shard, True)
    when torch.distributed is up, else (this shard's summary, False)."""
    from .sharding import gather, process_group

    with process_group(shard, str(upscaler.model.device)):
        mine = shard_jobs(jobs, shard)
        summary = upscale_files(mine, upscaler, desc=shard.label if shard.sharded else None, **options)
        parts = gather(summary) if shard.sharded else None
    return (Summary.merge(parts), True) if parts else (summary, False)


def upscale_picture(upscaler: Upscaler, picture: Picture, tta: bool = False, outscale: float | None = None,
                    progress=None) -> Picture:
    """Network over the RGB (and the alpha, as a gray image in the same batch), quantized to the input's bit depth."""
    batch = to_batch(picture)
    n, _, h, w = batch.shape
    if outscale and outscale != upscaler.scale:
        from .resize import imresize

        y = imresize(upscaler.upscale(batch, tta=tta), size=(round(h * outscale), round(w * outscale)))
        return from_planes(picture, quantize(y, picture.bits))
    planes = upscaler.upscale_levels(batch, picture.bits, tta=tta, progress=progress)
    del batch
    return from_planes(picture, planes)


def upscale_image(source: str | Path, target: str | Path, model: str | Upscaler = DEFAULT_MODEL, scale: int | None = None,
                  tta: bool = False, outscale: float | None = None, quality: int = 95,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, **load) -> Path:
    """Upscale one image file into `target` (format from its suffix). `model` is a name, a path or an Upscaler."""
    from .models import load_model

    upscaler = model if isinstance(model, Upscaler) else load_model(model, scale=scale, **load)
    picture = read_image(source, max_pixels=max_pixels)
    write_image(target, upscale_picture(upscaler, picture, tta=tta, outscale=outscale), quality=quality)
    return Path(target)


def upscale_files(jobs: list[Job], upscaler: Upscaler, tta: bool = False, outscale: float | None = None,
                  quality: int = 95, existing: str = "error", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  quiet: bool = False, report=None, desc: str | None = None) -> Summary:
    """Run the jobs: decode ahead and encode behind in threads; a bad input is reported and skipped.

    existing: "error" (refuse before starting), "skip" (resume a batch) or "overwrite". `desc` labels the bar.
    """
    from tqdm import tqdm

    report = report or (lambda msg: print(msg, file=sys.stderr))
    summary = Summary()
    todo = []
    for job in jobs:
        if job.target.exists() and existing != "overwrite":
            if existing == "skip":
                summary.skipped.append(job.target)
                continue
            raise EsrError(f"{job.target} exists: pass --skip-existing to keep it or --overwrite to replace it")
        todo.append(job)
    for folder in {j.target.parent for j in jobs}:
        remove_stale_parts(folder)  # left by a run that was killed while writing
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", desc=desc, disable=quiet or not sys.stderr.isatty() or not todo)
    with ThreadPoolExecutor(2, thread_name_prefix="esr-read") as readers, \
            ThreadPoolExecutor(1, thread_name_prefix="esr-write") as writers:
        try:
            _run_jobs(todo, upscaler, readers, writers, summary, report, bar, start,
                      dict(tta=tta, outscale=outscale), quality, max_pixels, existing == "overwrite")
        except BaseException:  # Ctrl-C: queued reads and writes are dropped; a write under way stays atomic
            readers.shutdown(cancel_futures=True)
            writers.shutdown(cancel_futures=True)
            raise
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _run_jobs(todo: list[Job], upscaler: Upscaler, readers, writers, summary: Summary, report, bar, start: float,
              options: dict, quality: int, max_pixels: int | None, replace: bool) -> None:
    """Read two images ahead, upscale, and hand each result to the writer; at most one write waits. Without
    `replace`, an output that another process wrote meanwhile is kept and counted as skipped."""
    reads = [readers.submit(read_image, j.source, max_pixels) for j in todo[:2]]
    writes: list[tuple[Job, Future, int]] = []
    for i, job in enumerate(todo):
        if i + 2 < len(todo):
            reads.append(readers.submit(read_image, todo[i + 2].source, max_pixels))
        try:
            picture = reads[i].result()
            reads[i] = None  # free the decoded input as soon as it is used
            result = upscale_picture(upscaler, picture, **options)
            writes.append((job, writers.submit(write_image, job.target, result, quality, replace), result.size[0] * result.size[1]))
        except EsrError as e:
            summary.failed.append((job.source, str(e)))
            report(f"esr: error: {e}")
        _collect(writes, summary, report, wait=len(writes) > 1)
        bar.update(1)
        bar.set_postfix_str(f"{summary.megapixels / max(time.perf_counter() - start, 1e-9):.2f} Mpx/s")
    _collect(writes, summary, report, wait=True, drain=True)


def _collect(writes, summary: Summary, report, wait: bool, drain: bool = False) -> None:
    """Account for finished writes; keep at most one write in flight unless draining."""
    while writes and (writes[0][1].done() or (wait and (drain or len(writes) > 1))):
        job, future, pixels = writes.pop(0)
        try:
            future.result()
            summary.written.append(job.target)
            summary.megapixels += pixels / 1e6
        except Exists:
            summary.skipped.append(job.target)
        except EsrError as e:
            summary.failed.append((job.source, str(e)))
            report(f"esr: error: {e}")
        except Exception as e:  # an encoder failing on one image must not end the batch
            summary.failed.append((job.source, first_line(e)))
            report(f"esr: error: {shown(job.target)}: cannot write: {first_line(e)}")


