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
