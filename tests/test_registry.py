"""Plugin discovery (stub entry points, as pluggy tests them) and structural detection."""

from __future__ import annotations

import pytest
import torch
from tiny import TinyNet, tiny

from esr_cli.errors import UnknownModel
from esr_cli.registry import Registry


class StubDist:
    def __init__(self, name="esr-tiny", version="1.2.3"):
        self.name, self.version = name, version


class StubEntryPoint:
    def __init__(self, name, load, value="pkg:obj", dist=None):
        self.name, self._load, self.value, self.dist = name, load, value, dist or StubDist()

    def load(self):
        return self._load()


def broken():
    raise ImportError("No module named 'missing_dependency'")


def test_discovers_and_reports_broken_plugins(capsys):
    eps = [StubEntryPoint("tiny", lambda: tiny), StubEntryPoint("broken", broken),
           StubEntryPoint("notarch", lambda: object()), StubEntryPoint("wrongname", lambda: tiny)]
    registry = Registry.from_entry_points(eps)
    assert list(registry.architectures) == ["tiny"]
    errors = {p.name: p.error for p in registry.plugins if p.error}
    assert set(errors) == {"broken", "notarch", "wrongname"}
    assert "missing_dependency" in errors["broken"]
    assert "not an esr_cli.Architecture" in errors["notarch"]
    ok = next(p for p in registry.plugins if p.name == "tiny")
    assert (ok.distribution, ok.version, ok.error) == ("esr-tiny", "1.2.3", None)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 3 and all(w.startswith("esr: warning: plugin") for w in warnings)


def test_duplicate_architecture_is_reported_for_the_later_plugin():
    eps = [StubEntryPoint("tiny", lambda: tiny, dist=StubDist("a")), StubEntryPoint("tiny", lambda: tiny, dist=StubDist("b"))]
    registry = Registry.from_entry_points(eps)
    assert list(registry.architectures) == ["tiny"]
    assert [p.distribution for p in registry.plugins if p.error] == ["b"]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_detect_reads_config_from_shapes(scale):
    sd = TinyNet(channels=5, blocks=3, scale=scale).state_dict()
    match = Registry.of(tiny).detect(sd)
    assert (match.config.channels, match.config.blocks, match.config.scale) == (5, 3, scale)


def test_unknown_weights_name_the_closest_candidates_and_why():
    sd = TinyNet().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(UnknownModel, match=r"closest: tiny: .*unexpected extra\.weight"):
        Registry.of(tiny).detect(sd)
    with pytest.raises(UnknownModel, match=r"tiny: lacks head\.weight"):
        Registry.of(tiny).detect({"conv.weight": torch.zeros(1)})


def test_unknown_names_suggest_close_ones():
    with pytest.raises(UnknownModel, match="closest: tiny"):
        Registry.of(tiny).get("tiyn")


# -- one layout, two networks: never a silent misload ------------------------------------------------


class TwinNet(TinyNet):
    """Same tensors as TinyNet, read differently (no ReLU): shapes cannot tell the two apart."""

    def forward(self, x):
        return self.shuffle(self.tail(self.body(self.head(x))))


def twins(tmp_path):
    """A registry of tiny and its twin, the twin with one zoo file; that file and an unknown one of the layout."""
    import dataclasses
    import hashlib

    from esr_cli import Weights

    known, unknown = tmp_path / "twin-x2.pth", tmp_path / "mine.pth"
    torch.save(TinyNet().state_dict(), known)
    torch.save(TinyNet(channels=6).state_dict(), unknown)
    entry = Weights(name="twin-x2", scale=2, url="https://example.invalid/twin-x2.pth",
                    sha256=hashlib.sha256(known.read_bytes()).hexdigest(), license="MIT",
                    source="https://example.invalid", params=0)
    twin = dataclasses.replace(tiny, name="twin", model=TwinNet, weights=(entry,))
    return Registry.of(tiny, twin), known, unknown


def test_a_layout_two_architectures_share_is_refused_unless_one_is_named(tmp_path):
    from esr_cli.checkpoint import read_state_dict
    from esr_cli.errors import AmbiguousModel
    from esr_cli.models import load_model

    registry, known, unknown = twins(tmp_path)
    with pytest.raises(AmbiguousModel, match=r"fits several architectures \(tiny, twin\).*--arch tiny") as e:
        registry.detect(read_state_dict(unknown), source=str(unknown))
    assert str(unknown) in str(e.value) and len(str(e.value).splitlines()) == 1
    assert registry.detect(read_state_dict(unknown), arch="twin").architecture.name == "twin"
    assert load_model(unknown, registry=registry, arch="tiny", device="cpu").model.architecture.name == "tiny"
    with pytest.raises(UnknownModel, match="does not fit architecture 'tiny'"):
        registry.detect({"conv.weight": torch.zeros(1)}, arch="tiny")


def test_a_zoo_file_given_by_path_is_recognised_by_its_sha256(tmp_path):
    from esr_cli.errors import EsrError
    from esr_cli.models import load_model

    registry, known, _ = twins(tmp_path)
    renamed = tmp_path / "anything.pth"
    renamed.write_bytes(known.read_bytes())
    upscaler = load_model(renamed, registry=registry, device="cpu")
    assert (upscaler.model.architecture.name, upscaler.name, type(upscaler.model.module)) == ("twin", "twin-x2", TwinNet)
    with pytest.raises(EsrError, match="is twin-x2, a twin model, not tiny"):
        load_model(renamed, registry=registry, arch="tiny", device="cpu")
    with pytest.raises(EsrError, match="a x2 model; --scale 3"):
        load_model(renamed, registry=registry, scale=3, device="cpu")
