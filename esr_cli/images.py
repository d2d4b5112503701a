"""Image files in and out: 8/16-bit, gray, alpha, palette, CMYK, EXIF orientation, ICC and EXIF kept.

Pixels travel as numpy arrays (H, W, C) of uint8 or uint16; `to_batch` / `from_batch` bridge to the engine's
(N, 3, H, W) float tensors in [0, 1].
"""

from __future__ import annotations

import io
import os
import re
import socket
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import BadImage, EsrError, first_line, shown

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP"}
DEFAULT_MAX_PIXELS = 100_000_000
ORIENTATION = 0x0112
IMAGE_LAYOUT_TAGS = (0x0100, 0x0101, 0x0102, 0x0103, 0x0106, 0x0111, 0x0115, 0x0116, 0x0117, 0x011C, 0x0140, 0x0142,
                     0x0143, 0x0144, 0x0145, 0x0152, 0x0153)
"""TIFF tags that describe how the input file stores its pixels (size, strips, tiles, compression, samples): a TIFF's
own tags show up in its EXIF, and carried into a bigger output they would describe the wrong pixels."""


@dataclass
class Picture:
    """Decoded pixels plus what must survive the round trip."""

    pixels: np.ndarray
    """(H, W, 3) RGB or (H, W, 1) gray, uint8 or uint16, orientation already applied."""
    alpha: np.ndarray | None = None
    """(H, W) of the same dtype, or None."""
    format: str = "PNG"
    icc: bytes | None = None
    exif: bytes | None = None

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def gray(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image file; BadImage (one line) for anything that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clear message
    if path.exists() and not path.is_file():  # a FIFO or a device would block the reader for ever
        raise BadImage(f"{shown(path)}: not a regular file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels and w * h > max_pixels:
                raise BadImage(f"{path}: {w}x{h} = {w * h / 1e6:.0f} Mpx is over --max-pixels "
                               f"{max_pixels / 1e6:.0f} Mpx (raise it if the file is trusted)")
            icc = im.info.get("icc_profile")
            exif = im.getexif()
            orientation = exif.get(ORIENTATION, 1)
            if orientation != 1:
                exif[ORIENTATION] = 1
            for tag in IMAGE_LAYOUT_TAGS:
                exif.pop(tag, None)
            exif_bytes = exif.tobytes() if len(exif) else None
            fmt = im.format or "PNG"
            if _is_16bit(path, im):
                pixels, alpha = _read_16bit(path, fmt)
            else:
                if im.mode == "CMYK":
                    icc = None  # a CMYK profile does not describe the RGB pixels we make
                pixels, alpha = _from_pil(im)
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadImage(f"{path}: is a directory") from None
    except PermissionError:
        raise BadImage(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise BadImage(f"{path}: not an image (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, zlib.error) as e:
        raise BadImage(f"{path}: corrupt or truncated image ({first_line(e)})") from None
    pixels, alpha = _orient(pixels, orientation), None if alpha is None else _orient(alpha, orientation)
    return Picture(pixels, alpha, fmt, icc, exif_bytes)


def _from_pil(im) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("1",):
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        return np.clip(a, 0, 65535).astype(np.uint16)[..., None], None
    elif mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[..., None], None
    a = np.asarray(im)
    if a.ndim == 2:
        return a[..., None], None
    if im.mode in ("RGBA", "LA"):
        return a[..., :-1], a[..., -1]
    return a[..., :3], None


def _is_16bit(path: Path, im) -> bool:
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        return len(head) == 26 and head[24] == 16 and im.mode not in ("I;16", "I;16B", "I")
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return bits[0] == 16 and im.mode not in ("I;16", "I;16B", "I;16L")
    return False


def _read_16bit(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    if fmt == "PNG":
        import png

        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, planes)
    else:
        import tifffile

        a = tifffile.imread(path)
        a = a[..., None] if a.ndim == 2 else a
        planes = a.shape[2]
    if planes in (2, 4):
        return a[..., :-1].astype(np.uint16), a[..., -1].astype(np.uint16)
    return a.astype(np.uint16), None


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the pixels are upright."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1),
           7: lambda x: np.rot90(x, 1)[::-1, ::-1], 8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


# ---- tensors -------------------------------------------------------------------------------------

def to_batch(picture: Picture):
    """(1 or 2, 3, H, W) float in [0, 1]: the RGB (gray repeated) and, if present, the alpha as a gray image."""
    import torch

    peak = 65535.0 if picture.bits == 16 else 255.0
    planes = [picture.pixels if not picture.gray else np.repeat(picture.pixels, 3, axis=2)]
    if picture.alpha is not None:
        planes.append(np.repeat(picture.alpha[..., None], 3, axis=2))
    a = np.stack(planes).astype(np.float32) / peak
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def quantize(x, bits: int) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8/uint16, rounded."""
    peak = 65535.0 if bits == 16 else 255.0
    dtype = np.uint16 if bits == 16 else np.uint8
    return x.clamp(0, 1).mul_(peak).round_().permute(0, 2, 3, 1).numpy().astype(dtype)


def from_planes(template: Picture, planes: np.ndarray) -> Picture:
    """Rebuild a Picture from quantized (N, H, W, 3) planes in the order `to_batch` made them."""
    rgb = planes[0]
    pixels = rgb.mean(axis=2, keepdims=True).round().astype(rgb.dtype) if template.gray else rgb
    alpha = planes[1].mean(axis=2).round().astype(rgb.dtype) if template.alpha is not None else None
    return replace(template, pixels=pixels, alpha=alpha)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header, BadImage when it is not a readable image (a FIFO or device: not read)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise BadImage(f"{shown(path)}: not a regular file")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"{path}: not a readable image ({type(e).__name__})") from None
    return h, w


def header_pixels(path: Path) -> int:
    """Width x height from the file's header (nothing decoded); 0 when it cannot be read (reading it later says
    why). The weight of an image when work is shared out (`esr_cli.sharding`)."""
    try:
        h, w = image_size(path)
    except BadImage:
        return 0
    return h * w


# ---- writing -------------------------------------------------------------------------------------

def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise EsrError(f"{path}: unknown output format .{suffix} (use png, jpg, webp, tiff or bmp)")
    return FORMATS[suffix]


def write_image(path: str | Path, picture: Picture, quality: int = 95, replace: bool = True) -> None:
    """Encode to `path` (format from the suffix) through a temporary file and an atomic rename; `replace=False`
    keeps a file that another process wrote there meanwhile (`Exists`)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "PNG":  # streamed into the file: no full-size copy of a huge output
        atomic_write(path, lambda f: _write_png(f, picture), replace)
        return
    try:
        data = encode(picture, fmt, quality)
    except (OSError, ValueError, TypeError, KeyError) as e:  # what the encoders raise for what they cannot hold
        raise EsrError(f"{path}: cannot be written as {fmt}: {first_line(e)}") from None
    atomic_write(path, data, replace)


def encode(picture: Picture, fmt: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        _write_png(buf, picture)
    elif picture.bits == 16 and fmt == "TIFF":
        import tifffile

        tifffile.imwrite(buf, _stack(picture), photometric="minisblack" if picture.gray else "rgb",
                         extrasamples=(2,) if picture.alpha is not None else None, iccprofile=picture.icc)
    else:
        _pil_image(picture, fmt).save(buf, format=fmt, **_save_options(picture, fmt, quality))
    return buf.getvalue()


def _stack(picture: Picture) -> np.ndarray:
    a = picture.pixels if picture.alpha is None else np.concatenate([picture.pixels, picture.alpha[..., None]], 2)
    return a[..., 0] if a.shape[2] == 1 else a


def _pil_image(picture: Picture, fmt: str):
    from PIL import Image

    pic = picture if picture.bits == 8 else replace(
        picture, pixels=(picture.pixels >> 8).astype(np.uint8),
        alpha=None if picture.alpha is None else (picture.alpha >> 8).astype(np.uint8))
    if pic.alpha is not None and fmt == "JPEG":  # JPEG has no alpha: flatten onto white
        a = pic.alpha[..., None].astype(np.float32) / 255
        flat = pic.pixels.astype(np.float32) * a + 255 * (1 - a)
        pic = replace(pic, pixels=flat.round().astype(np.uint8), alpha=None)
    a = _stack(pic)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2] if a.ndim == 3 else 1]
    image = Image.fromarray(a, mode=mode)
    return image.convert("RGBA") if mode == "LA" and fmt == "BMP" else image  # BMP has no gray + alpha


def _save_options(picture: Picture, fmt: str, quality: int) -> dict:
    options = {}
    if picture.icc:
        options["icc_profile"] = picture.icc
    if picture.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = picture.exif
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    return options


def _write_png(f: BinaryIO, picture: Picture, strip: int = 256) -> None:
    """PNG (8 or 16 bit, gray/RGB, with alpha) written strip by strip: Sub-filtered rows through one zlib stream,
    so memory stays at one strip beyond the pixels; iCCP and eXIf chunks kept."""
    a = _stack(picture)
    h, w = a.shape[:2]
    planes = 1 if a.ndim == 2 else a.shape[2]
    f.write(b"\x89PNG\r\n\x1a\n")
    _chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 8 * a.itemsize, {1: 0, 2: 4, 3: 2, 4: 6}[planes], 0, 0, 0))
    if picture.icc:
        _chunk(f, b"iCCP", b"icc\x00\x00" + zlib.compress(picture.icc))
    if picture.exif:
        _chunk(f, b"eXIf", picture.exif[6:] if picture.exif.startswith(b"Exif\x00\x00") else picture.exif)
    z, step = zlib.compressobj(6), planes * a.itemsize  # bytes per pixel: the Sub filter's distance
    for y in range(0, h, strip):
        rows = np.ascontiguousarray(a[y:y + strip], dtype=">u2" if a.itemsize == 2 else np.uint8)
        rows = rows.reshape(rows.shape[0], -1).view(np.uint8)
        data = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        data[:, 0] = 1  # filter type Sub: each byte minus the same byte of the pixel to its left
        data[:, 1:] = rows
        data[:, 1 + step:] -= rows[:, :-step]
        if packed := z.compress(data.tobytes()):
            _chunk(f, b"IDAT", packed)
    _chunk(f, b"IDAT", z.flush())
    _chunk(f, b"IEND", b"")


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))


PART = ".part"
"""Suffix of the hidden temporary files `.NAME.HOST-PID.xxxx.part` that writes go through before their rename."""


HOST = "".join(c if c.isascii() and c.isalnum() else "-" for c in socket.gethostname()) or "host"
"""This machine as part files name their writer (`HOST-PID`: letters, digits and '-')."""
WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]+" + re.escape(PART) + "$")


def _writer_is_gone(part: Path) -> bool:
    """True when the part's writer was a process of this host that no longer runs (a killed run)."""
    writer = WRITER.search(part.name)
    if writer is None or writer["host"] != HOST:
        return False  # another machine's write (a shared folder): only its age tells
    try:
        os.kill(int(writer["pid"]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # alive, another user's
    return False


def remove_stale_parts(folder: Path, older_than_s: float = 3600.0) -> int:
    """Delete temporary files of writes that a killed run left in `folder`: at once those whose writer on this host
    is gone and those already linked to their output (killed between the link and the unlink: the output is
    complete); those of other hosts when not touched for `older_than_s` (another machine may be writing them now).
    Returns how many were removed."""
    import time

    removed = 0
    for part in folder.glob(f".*{PART}") if folder.is_dir() else ():
        try:
            info = part.stat()
            if info.st_nlink > 1 or _writer_is_gone(part) or time.time() - info.st_mtime > older_than_s:
                part.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def _create(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` unless `path` exists (FileExistsError). Where hard links are refused (FAT, some network
    shares) the check and the rename are two steps."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    tmp.unlink(missing_ok=True)  # another run may have cleaned it up already (remove_stale_parts)


def writable_folder(folder: str | Path, option: str = "-o") -> Path:
    """`folder`, created if missing, or EsrError if it cannot hold outputs (a file, read-only, no permission)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EsrError(f"{option} {shown(folder)}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # the real test: os.access ignores read-only mounts
    except OSError as e:
        raise EsrError(f"{option} {shown(folder)}: cannot write there ({e.strerror or first_line(e)})") from None
    return folder


def writable_file(path: str | Path, option: str = "-o") -> Path:
    """`path`, or EsrError now (not after a long job) if no file can be written there: a folder, or a place
    `writable_folder` refuses."""
    path = Path(path)
    if path.is_dir():
        raise EsrError(f"{option} {shown(path)}: is a folder; give a file name")
    writable_folder(path.parent, option)
    return path


UMASK = os.umask(0o022)
os.umask(UMASK)  # read once: the process's umask, restored at once


class Exists(EsrError):
    """The output appeared while it was being made (another process wrote it) and was kept."""


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None], replace: bool = True) -> None:
    """Write bytes (or let `data(file)` write) to a temporary file beside `path`, then rename: never a
    half-written file. `replace=False`: the final name is created only if it does not exist at that moment
    (a hard link, atomic), else `Exists` and the file found there is kept."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}-{os.getpid()}.", suffix=PART, dir=path.parent)
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; an output gets the permissions any new file gets
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                _create(Path(tmp), path)
            except FileExistsError:
                raise Exists(f"{shown(path)}: written by another process meanwhile; kept") from None
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise EsrError(f"{shown(path)}: cannot write ({e.strerror or first_line(e)})") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
