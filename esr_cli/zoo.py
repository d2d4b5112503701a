"""The model zoo: resolving model names, and fetching, caching and verifying the authors' weights.

Environment: `ESR_CACHE` (cache folder), `ESR_MIRROR` (URL or folder replacing the upstream scheme and host),
`ESR_OFFLINE=1` (never download), `ESR_TIMEOUT` (connect/read time-out in seconds, default 30).
"""

from __future__ import annotations

import contextlib
import math
import difflib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .architecture import Architecture, Weights
from .checkpoint import sha256_of
from .errors import DownloadError, UnknownModel, first_line
from .registry import Registry

DEFAULT_SCALE = 4
RETRIES = 3
BACKOFF_S = 1.0
"""Seconds before the second try; doubled before each further one."""
CHUNK = 64 * 1024
GITHUB_RAW = "raw.githubusercontent.com"


class _Transient(Exception):
    """A failure worth another try: a dropped connection, a time-out, a 5xx answer."""


def cache_dir() -> Path:
    """`ESR_CACHE`, else the platform's user cache folder (`~/.cache/esr` on Linux)."""
    if env := os.environ.get("ESR_CACHE"):
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "esr" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "esr"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "esr"


def cached_path(w: Weights) -> Path:
    """Where `w` lives in the cache, present or not: `<cache>/<sha256>/<file name of the url>`.

    The folder is the full digest, so that `verify` needs nothing but the cache itself."""
    return cache_dir() / w.sha256.lower() / Path(urlsplit(w.url).path).name


def is_cached(w: Weights) -> bool:
    return cached_path(w).is_file()


def source_url(url: str) -> str:
    """`url`, or where `ESR_MIRROR` holds it: the mirror replaces scheme and host of raw.githubusercontent.com
    URLs (`<mirror>/owner/repo/commit/path`) and scheme only of other hosts (`<mirror>/<host>/<path>`)."""
    mirror = os.environ.get("ESR_MIRROR", "").rstrip("/")
    if not mirror:
        return url
    parts = urlsplit(url)
    path = parts.path if parts.netloc == GITHUB_RAW else f"/{parts.netloc}{parts.path}"
    return mirror + path


def resolve(registry: Registry, name: str, scale: int | None = None) -> tuple[Architecture, Weights]:
    """The weights called `name`; else `<name>-x<scale>`; else architecture `name`'s first weights at `scale`
    (scale 4 when not given)."""
    by_name = {w.name: (arch, w) for arch in registry.architectures.values() for w in arch.weights}
    if name in by_name:
        arch, w = by_name[name]
        if scale is not None and scale != w.scale:
            raise UnknownModel(f"{name} is a x{w.scale} model, not x{scale}; drop the scale or name another model")
        return arch, w
    scale = scale or DEFAULT_SCALE
    if f"{name}-x{scale}" in by_name:
        return by_name[f"{name}-x{scale}"]
    if arch := registry.architectures.get(name):
        if at_scale := [w for w in arch.weights if w.scale == scale]:
            return arch, at_scale[0]
        have = ", ".join(w.name for w in arch.weights) or "none"
        raise UnknownModel(f"architecture {name!r} has no pretrained x{scale} weights (it has: {have})")
    close = difflib.get_close_matches(name, [*by_name, *registry.architectures], n=3, cutoff=0.3)
    hint = f"; closest: {', '.join(close)}" if close else "; `esr models` lists them"
    raise UnknownModel(f"no model named {name!r}{hint}")


def fetch(w: Weights, quiet: bool = False) -> Path:
    """The cached file of `w`, downloaded first if missing (resumed, retried, sha256-checked before it enters
    the cache; one process at a time per file)."""
    path = cached_path(w)
    if path.is_file():
        return path
    url = source_url(w.url)
    how = f"download {w.url} elsewhere and copy it to {path}, or pass the file with --model PATH"
    if os.environ.get("ESR_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise DownloadError(f"{w.name} is not in the cache and ESR_OFFLINE is set: {how}")
    mirrored = url != w.url
    if not mirrored and urlsplit(url).scheme != "https":
        raise DownloadError(f"refusing to download {w.name} from {url}: only https URLs are fetched "
                            "(or set ESR_MIRROR)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, quiet):
        if path.is_file():  # another process finished it while we waited
            return path
        part = path.with_name(path.name + ".part")
        _download(url, part, w.name, quiet, how)
        digest = sha256_of(part)
        if digest != w.sha256.lower():
            part.unlink()
            raise DownloadError(f"{url} served wrong bytes for {w.name} (sha256 {digest[:16]}..., expected "
                                f"{w.sha256[:16]}...); the partial file was deleted")
        os.replace(part, path)
    return path


def verify() -> list[tuple[Path, bool]]:
    """Every file in the cache, re-hashed against the digest its folder is named after."""
    root = cache_dir()
    files = sorted(p for p in root.glob("*/*") if p.is_file() and p.suffix not in (".part", ".lock"))
    return [(p, sha256_of(p) == p.parent.name) for p in files]


def remove(w: Weights) -> bool:
    """Delete the cached file of `w` and any partial download; False when there was nothing."""
    path = cached_path(w)
    found = path.is_file()
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".part").unlink(missing_ok=True)
    return found


def _download(url: str, part: Path, label: str, quiet: bool, how: str) -> None:
    """Stream `url` into `part`, resuming what is already there; transient failures are retried with back-off."""
    for attempt in range(RETRIES):
        try:
            return _transfer(url, part, label, quiet)
        except _Transient as e:
            reason = str(e)
            if attempt + 1 < RETRIES:
                time.sleep(BACKOFF_S * 2**attempt)
    raise DownloadError(f"could not download {label} from {url} after {RETRIES} tries ({reason}); {how}")


def _transfer(url: str, part: Path, label: str, quiet: bool) -> None:
    from tqdm import tqdm

    start = part.stat().st_size if part.is_file() else 0
    stream, offset, total = _open(url, part, start)
    received = offset
    bar = tqdm(total=total, initial=offset, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
               leave=False, disable=quiet or not (sys.stdout.isatty() and sys.stderr.isatty()))
    try:
        with stream, bar, open(part, "ab" if offset else "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:  # time-outs and resets are OSErrors
        raise _Transient(f"{type(e).__name__}: {e}") from None
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")


def _open(url: str, part: Path, start: int):
    """(stream, offset it starts at, total size or None) for an http(s) URL or a mirror file path."""
    if urlsplit(url).scheme not in ("http", "https"):
        local = Path(urllib.request.url2pathname(urlsplit(url).path) if url.startswith("file:") else url)
        if not local.is_file():
            raise DownloadError(f"the mirror has no file {local}")
        stream = open(local, "rb")
        stream.seek(start)
        return stream, start, local.stat().st_size
    headers = {"User-Agent": f"esr/{__version__}", **({"Range": f"bytes={start}-"} if start else {})}
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=_timeout())
    except urllib.error.HTTPError as e:
        if e.code == 416:  # the partial file is not a prefix of this one: start again
            part.unlink(missing_ok=True)
        if e.code in (408, 416, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url} answered HTTP {e.code} {first_line(e.reason)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(first_line(getattr(e, "reason", e))) from None
    offset = start if response.status == 206 and _range_start(response) == start else 0
    length = response.headers.get("Content-Length")
    return response, offset, offset + int(length) if length else None


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never from https to anything else (a downgrade would bypass the https-only rule)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise DownloadError(f"{req.full_url} redirects to {newurl}: refused, only https is fetched")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpsOnly)


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    with contextlib.suppress(ValueError, IndexError):
        return int(value.split()[1].split("-")[0])
    return None


def _timeout() -> float:
    value = os.environ.get("ESR_TIMEOUT") or "30"
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise DownloadError(f"ESR_TIMEOUT={value!r}: give a positive number of seconds")
    return seconds


@contextlib.contextmanager
def _locked(path: Path, quiet: bool) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (fcntl, or msvcrt on Windows) across processes."""
    with open(path.with_name(path.name + ".lock"), "a+b") as f:
        if not _lock(f, blocking=False):
            if not quiet:
                sys.stderr.write(f"esr: waiting for another process downloading {path.name}\n")
            _lock(f, blocking=True)
        try:
            yield
        finally:
            _unlock(f)


def _lock(f, blocking: bool) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            f.seek(0)
            while True:  # LK_LOCK gives up after 10 s; keep waiting
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
                    return True
                except OSError:
                    if not blocking:
                        raise
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            return True
    except OSError:
        return False


def _unlock(f) -> None:
    if os.name == "nt":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_UN)
