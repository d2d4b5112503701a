"""The model zoo: names, the cache, and downloads through a loopback server that misbehaves on demand."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED, mirror_path
from typer.testing import CliRunner

from esr_cli import Architecture, Registry, Weights, registry, zoo
from esr_cli.commands import models
from esr_cli.errors import DownloadError, UnknownModel

UPSTREAM = "https://raw.githubusercontent.com/someone/tiny/0123abcd/model_zoo"


@dataclass
class TinyConfig:
    scale: int = 4


def tiny_arch(*weights: Weights) -> Architecture:
    return Architecture(name="tiny", model=TinyConfig, config=TinyConfig, detect=("conv.weight",),
                        read_config=lambda sd, scale: TinyConfig(scale or 4), paper="Tiny et al. 2099",
                        weights=weights)


def weights_for(data: bytes, name: str = "tiny-x4", scale: int = 4, url: str | None = None) -> Weights:
    return Weights(name=name, scale=scale, url=url or f"{UPSTREAM}/{name}.pth",
                   sha256=hashlib.sha256(data).hexdigest(), license="none", source="https://github.com/someone/tiny",
                   params=len(data) // 4, variant="test", published={"Set5": (30.0, 0.9)}, reference_psnr=30.01)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ESR_CACHE", str(tmp_path / "cache"))
    for name in ("ESR_MIRROR", "ESR_OFFLINE", "ESR_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(zoo, "BACKOFF_S", 0.05)
    return tmp_path / "cache"


@pytest.fixture
def served(file_server, cache, monkeypatch):
    """(server, weights, bytes): a 300 KB file on the loopback mirror."""
    data = os.urandom(300_000)
    w = weights_for(data)
    file_server.add(mirror_path(w.url).lstrip("/"), data)
    monkeypatch.setenv("ESR_MIRROR", file_server.url)
    return file_server, w, data


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")


# -- names and paths ---------------------------------------------------------------------------------


def test_cache_dir_follows_env_then_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("ESR_CACHE", str(tmp_path))
    assert zoo.cache_dir() == tmp_path
    monkeypatch.delenv("ESR_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(zoo.sys, "platform", "linux")
    assert zoo.cache_dir() == Path.home() / ".cache" / "esr"
    monkeypatch.setattr(zoo.sys, "platform", "darwin")
    assert zoo.cache_dir() == Path.home() / "Library" / "Caches" / "esr"


def test_cached_path_is_stable_and_named_after_the_digest(cache):
    w = weights_for(b"abc")
    assert zoo.cached_path(w) == cache / w.sha256 / "tiny-x4.pth"
    assert zoo.cached_path(w) == zoo.cached_path(weights_for(b"abc"))


def test_mirror_replaces_scheme_and_host(monkeypatch):
    monkeypatch.setenv("ESR_MIRROR", "http://127.0.0.1:9/m/")
    assert zoo.source_url(f"{UPSTREAM}/a.pth") == "http://127.0.0.1:9/m/someone/tiny/0123abcd/model_zoo/a.pth"
    assert zoo.source_url("https://example.org/x/a.pth") == "http://127.0.0.1:9/m/example.org/x/a.pth"


def test_resolve_exact_short_and_architecture_names():
    x2, x4, s4 = (weights_for(bytes([i]), name, scale) for i, (name, scale) in
                  enumerate([("tiny-x2", 2), ("tiny-x4", 4), ("tiny-s-x4", 4)]))
    reg = Registry.of(tiny_arch(s4, x2, x4))
    assert zoo.resolve(reg, "tiny-s-x4", None)[1] == s4
    assert zoo.resolve(reg, "tiny", None)[1] == x4
    assert zoo.resolve(reg, "tiny", 2)[1] == x2
    assert zoo.resolve(reg, "tiny-s", 4)[1] == s4
    with pytest.raises(UnknownModel, match="x2 model, not x4"):
        zoo.resolve(reg, "tiny-x2", 4)
    with pytest.raises(UnknownModel, match="no pretrained x3 weights"):
        zoo.resolve(reg, "tiny", 3)
    with pytest.raises(UnknownModel, match="closest: tiny-x4, tiny-s-x4, tiny-x2"):
        zoo.resolve(reg, "tiny-x44", None)


# -- downloads ---------------------------------------------------------------------------------------


def test_download_checks_the_hash_and_then_uses_the_cache(served, cache):
    server, w, data = served
    path = zoo.fetch(w, quiet=True)
    assert path == zoo.cached_path(w) and path.read_bytes() == data
    assert zoo.fetch(w) == path and len(server.requests) == 1
    assert leftovers(cache) == ["tiny-x4.pth"]


def test_resume_after_a_dropped_connection_resends_less_than_the_file(served):
    server, w, data = served
    server.faults = ["drop"]
    assert zoo.fetch(w, quiet=True).read_bytes() == data
    assert [r for _, r in server.requests] == [None, f"bytes={len(data) // 2}-"]
    assert server.bytes_sent - len(data) // 2 < len(data)


def test_resume_of_a_partial_file_left_by_an_earlier_run(served):
    server, w, data = served
    part = zoo.cached_path(w).with_suffix(".pth.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100_000])
    assert zoo.fetch(w, quiet=True).read_bytes() == data
    assert server.bytes_sent == len(data) - 100_000


def test_wrong_bytes_are_rejected_and_nothing_is_left(served, cache):
    server, w, _ = served
    server.faults = ["wrong"]
    with pytest.raises(DownloadError, match=f"{server.url}/someone/tiny/.* served wrong bytes"):
        zoo.fetch(w, quiet=True)
    assert leftovers(cache) == []


def test_server_errors_are_retried(served):
    server, w, data = served
    server.faults = ["500", "500"]
    assert zoo.fetch(w, quiet=True).read_bytes() == data
    assert len(server.requests) == 3


def test_persistent_failure_gives_up_after_three_tries(served):
    server, w, _ = served
    server.faults = ["500"] * 5
    with pytest.raises(DownloadError, match="after 3 tries .*HTTP 500.*--model PATH"):
        zoo.fetch(w, quiet=True)
    assert len(server.requests) == 3


def test_not_found_is_not_retried(served):
    server, w, _ = served
    server.faults = ["404"]
    with pytest.raises(DownloadError, match="tiny-x4.pth answered HTTP 404"):
        zoo.fetch(w, quiet=True)
    assert len(server.requests) == 1


def test_a_redirect_loop_is_one_line_and_not_retried(served, cache):
    server, w, _ = served
    server.faults = ["loop"]
    with pytest.raises(DownloadError) as e:
        zoo.fetch(w, quiet=True)
    assert "HTTP 302" in str(e.value) and "\n" not in str(e.value)
    assert leftovers(cache) == []


def test_a_redirect_from_https_to_http_is_refused():
    import urllib.request

    req = urllib.request.Request("https://github.com/a/b/releases/download/v1/m.pth")
    with pytest.raises(DownloadError, match="redirects to http://evil.example/m.pth: refused"):
        zoo._HttpsOnly().redirect_request(req, None, 302, "Found", {}, "http://evil.example/m.pth")
    assert zoo._HttpsOnly().redirect_request(req, None, 302, "Found", {}, "https://objects.example/m.pth")


def test_a_stalled_server_times_out(served, monkeypatch):
    server, w, _ = served
    server.faults = ["stall"] * 3
    monkeypatch.setenv("ESR_TIMEOUT", "0.3")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        zoo.fetch(w, quiet=True)
    assert time.monotonic() - started < 3


def test_offline_names_the_file_and_how_to_get_it(served, monkeypatch):
    server, w, _ = served
    monkeypatch.setenv("ESR_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        zoo.fetch(w)
    message = str(e.value)
    assert "\n" not in message and w.url in message and str(zoo.cached_path(w)) in message
    assert "--model PATH" in message and not server.requests


def test_only_https_without_a_mirror(cache):
    w = weights_for(b"x", url="http://example.org/tiny-x4.pth")
    with pytest.raises(DownloadError, match="only https"):
        zoo.fetch(w)


def test_mirror_as_a_local_folder(cache, tmp_path, monkeypatch):
    data = os.urandom(5000)
    w = weights_for(data)
    target = tmp_path / "mirror" / mirror_path(w.url).lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    monkeypatch.setenv("ESR_MIRROR", str(tmp_path / "mirror"))
    assert zoo.fetch(w, quiet=True).read_bytes() == data
    monkeypatch.setenv("ESR_MIRROR", str(tmp_path / "elsewhere"))
    with pytest.raises(DownloadError, match="the mirror has no file"):
        zoo.fetch(weights_for(b"other"))


def test_two_processes_downloading_one_file(served, capfd):
    server, w, data = served
    server.chunk_delay_s = 0.03  # 19 chunks: about 0.6 s, so the two overlap
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=zoo.fetch, args=(w,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(20)
    assert [child.exitcode for child in children] == [0, 0]
    assert zoo.cached_path(w).read_bytes() == data
    assert server.bytes_sent == len(data)  # the second waited for the first, then used its file
    assert "waiting for another process downloading tiny-x4.pth" in capfd.readouterr().err


def test_verify_and_remove(served, cache):
    _, w, _ = served
    path = zoo.fetch(w, quiet=True)
    assert zoo.verify() == [(path, True)]
    path.write_bytes(b"tampered")
    assert zoo.verify() == [(path, False)]
    assert zoo.remove(w) and not path.exists() and not zoo.remove(w)


# -- the `esr models` commands -----------------------------------------------------------------------


@pytest.fixture
def cli(served, monkeypatch):
    """Run `esr models ...` against a registry holding the tiny architecture and its served weights."""
    _, w, _ = served
    other = weights_for(b"never served", name="tiny-x2", scale=2)
    monkeypatch.setattr(registry, "default_registry", lambda: Registry.of(tiny_arch(w, other)))
    runner = CliRunner()
    return lambda *args: runner.invoke(models.app, list(args))


def test_models_table_and_json(cli):
    result = cli()
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "arch", "scale", "params", "licence", "source", "cached"]
    assert lines[1].split()[:4] == ["tiny-x4", "tiny", "x4", "75K"] and "none (no licence)" in lines[1]
    rows = json.loads(cli("--json").output)
    assert [r["name"] for r in rows] == ["tiny-x4", "tiny-x2"]
    assert {"name", "arch", "scale", "url", "sha256", "license", "params", "source", "cached"} <= rows[0].keys()
    assert rows[0]["cached"] is False


def test_models_download_info_verify_remove(cli):
    result = cli("download", "tiny", "--quiet")
    assert result.exit_code == 0, result.output
    rows = json.loads(cli("--json").output)
    assert rows[0]["cached"] is True
    info = cli("info", "tiny").output
    assert "Tiny et al. 2099" in info and "published Set5" in info and "30.0100 dB" in info
    assert str(zoo.cached_path(weights_for(b""))).rsplit("/", 2)[0] in info
    assert cli("verify").output.endswith("1 files in {}, 0 bad\n".format(zoo.cache_dir()))
    assert "removed" in cli("remove", "tiny-x4").output
    assert "is not cached" in cli("remove", "tiny-x4").output


def test_models_download_reports_failures_and_exits_1(cli):
    result = cli("download", "--all", "--quiet")
    assert result.exit_code == 1
    assert "tiny-x4" in result.output and "tiny-x2" in result.output and "answered HTTP 404" in result.output
    assert isinstance(cli("info", "tinny").exception, UnknownModel)


# -- the reference weights of the installed plugins ----------------------------------------------------


def _sources() -> list[dict]:
    path = SHARED / "zoo" / "SOURCES.json"
    return json.loads(path.read_text()) if path.is_file() else []


@pytest.mark.slow  # loading every installed plugin imports torch
@pytest.mark.parametrize("entry", _sources(), ids=lambda e: Path(e["file"]).stem)
def test_every_reference_weight_downloads_by_name(entry, mirror_dir, file_server, cache, monkeypatch):
    declared = {w.sha256: w for w in registry.default_registry().weights()}
    if entry["sha256"] not in declared:
        pytest.skip(f"no installed plugin declares {entry['file']} (sha256 {entry['sha256'][:12]}...)")
    file_server.root = mirror_dir
    monkeypatch.setenv("ESR_MIRROR", file_server.url)
    name = declared[entry["sha256"]].name
    _, w = zoo.resolve(registry.default_registry(), name, None)
    assert w.url == entry["upstream_url"]
    path = zoo.fetch(w, quiet=True)
    assert zoo.sha256_of(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
