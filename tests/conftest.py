"""Shared fixtures: a loopback HTTP server with fault switches, and a mirror tree of the reference weights."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core (`-n 2`): one thread each, the esr runs they start too
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def zoo_entries(entries: list[dict]) -> list:
    """SOURCES.json entries as test parameters, named by file."""
    return [pytest.param(e, id=Path(e["file"]).name) for e in entries]


FAULTS = ("ok", "drop", "wrong", "404", "500", "stall", "loop")
"""What one request gets: the file; half of it then a closed connection; the file with flipped bytes;
an error status; no answer at all until the test ends or `stall_s` passes; a redirect to itself (every time)."""


@dataclass
class FileServer:
    """The state of a running loopback server: files under `root`, served at `url`."""

    root: Path
    url: str = ""
    faults: list[str] = field(default_factory=list)
    """One fault per request, in order; requests beyond the list get "ok"."""
    chunk_delay_s: float = 0.0
    """Pause after every 16 KiB sent, to make a download last."""
    stall_s: float = 10.0
    bytes_sent: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every request."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def add(self, relative: str, data: bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server.state
        with state.lock:
            fault = state.faults.pop(0) if state.faults else "ok"
            state.requests.append((self.path, self.headers.get("Range")))
        file = state.root / unquote(urlsplit(self.path).path).lstrip("/")
        if fault == "stall":
            state.released.wait(state.stall_s)
            return
        if fault == "loop":
            state.faults.insert(0, "loop")
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()
            return
        if fault in ("404", "500") or not file.is_file():
            self.send_error(404 if fault == "ok" else int(fault))
            return
        data = file.read_bytes()
        if fault == "wrong":
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        self._send(state, data, fault == "drop")

    def _send(self, state: FileServer, data: bytes, drop: bool) -> None:
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if drop:
            body = body[: len(body) // 2]
        try:
            for i in range(0, len(body), 16384):
                self.wfile.write(body[i:i + 16384])
                with state.lock:
                    state.bytes_sent += len(body[i:i + 16384])
                time.sleep(state.chunk_delay_s)
        except (ConnectionError, TimeoutError):
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: FileServer


@pytest.fixture
def file_server(tmp_path):
    """A `FileServer` on 127.0.0.1 serving `tmp_path/served`, with Range support and fault switches."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FileServer(root=tmp_path / "served", url=f"http://127.0.0.1:{server.server_address[1]}")
    server.state.root.mkdir()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.state
    server.state.released.set()
    server.shutdown()
    server.server_close()


def mirror_path(url: str) -> str:
    """Where ESR_MIRROR holds `url` (as esr_cli.zoo.source_url): raw GitHub paths as they are, others under the host."""
    parts = urlsplit(url)
    return parts.path if parts.netloc == "raw.githubusercontent.com" else f"/{parts.netloc}{parts.path}"


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory) -> Path:
    """A mirror tree `<owner>/<repo>/<commit>/<path>` of ../shared/zoo/weights, built from SOURCES.json."""
    sources = SHARED / "zoo" / "SOURCES.json"
    if not sources.is_file():
        pytest.skip(f"needs the shared reference weights at {SHARED / 'zoo'} (absent)")
    root = tmp_path_factory.mktemp("mirror")
    for entry in json.loads(sources.read_text()):
        target = root / mirror_path(entry["upstream_url"]).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(SHARED / "zoo" / entry["file"], target)
        except OSError:  # no symlinks (Windows without the privilege)
            shutil.copyfile(SHARED / "zoo" / entry["file"], target)
    return root


# ---- for the hostile-use tests (tests/test_hostile_*.py) ------------------------------------------------

@pytest.fixture(scope="module")
def user_weights(tmp_path_factory) -> Path:
    """A small random network of an installed architecture (imdn-rtc x2), as a user's own file."""
    import torch

    from esr_cli import default_registry

    arch = default_registry().get("imdn-rtc")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mine.pth"
    torch.save(arch.build(arch.config(scale=2)).state_dict(), path)
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Two small random RGB PNGs in tmp_path/in."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder
