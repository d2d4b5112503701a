"""Every installed architecture passes the contract check (timm-style: a new plugin is tested by being installed)."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED, zoo_entries

from esr_cli import check_architecture, default_registry, read_state_dict
from esr_cli.checkpoint import count_params
from esr_cli.errors import AmbiguousModel

REGISTRY = default_registry()
ARCHS = sorted(REGISTRY.architectures)


@pytest.mark.parametrize("name", ARCHS)
def test_contract(name):
    check_architecture(REGISTRY.architectures[name], REGISTRY)


def test_first_party_plugins_are_installed():
    assert {"rlfn", "rfdn", "imdn", "edsr", "mdsr", "mdrn", "safmn", "gfmn", "safmnpp", "lgvan", "pan"} <= set(ARCHS)
    assert not [p for p in REGISTRY.plugins if p.error]


def test_weights_names_are_unique_and_well_formed():
    names = [w.name for w in REGISTRY.weights()]
    assert len(names) == len(set(names))


def sources():
    path = SHARED / "zoo" / "SOURCES.json"
    return json.loads(path.read_text()) if path.is_file() else []


@pytest.mark.skipif(not sources(), reason=f"needs the shared reference weights at {SHARED / 'zoo'} (absent)")
@pytest.mark.parametrize("entry", zoo_entries(sources()))
def test_official_file_is_declared_detected_and_counted(entry):
    """Each authors' file: declared by a plugin (same sha256), detected with strict shapes, parameters equal."""
    declared = [(a, w) for a in REGISTRY.architectures.values() for w in a.weights if w.sha256 == entry["sha256"]]
    if entry["scale"] == "any":
        assert not declared  # IMDN-AS keeps the input size: outside the x-scale contract (see plugins/esr-imdn)
        return
    assert declared, f"no plugin declares {entry['file']}"
    sd = read_state_dict(SHARED / "zoo" / entry["file"])
    try:
        candidates = [REGISTRY.detect(sd, scale=entry["scale"]).architecture.name]
    except AmbiguousModel as e:  # a layout that several networks share: the file is known by its sha256
        candidates = e.candidates
    for arch, w in declared:
        assert arch.name in candidates
        match = REGISTRY.detect(sd, scale=entry["scale"], arch=arch.name)
        assert match.config.scale == w.scale == entry["scale"]
        assert w.params == count_params(sd) == entry["checkpoint"]["n_params_total"]
        assert w.url == entry["upstream_url"]
