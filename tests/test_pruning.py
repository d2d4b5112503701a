"""Channel pruning (esr_cli.pruning, RLFN's prune hook, `esr prune`, prune stages of recipes): the smaller network
has the expected shapes and parameters, computes exactly what the unpruned one does when the removed channels are
zero, is detected as rlfn, is continued by `esr finetune`; the RLFN NTIRE 2022 recipe runs end to end."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from esr_cli import default_registry, read_state_dict
from esr_cli import pruning
from esr_cli.benchmarking import complexity
from esr_cli.errors import EsrError
from esr_cli.recipes import load_recipe, stages_of
from esr_cli.registry import Match
from esr_cli.training import run

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from hostile import esr, one_error  # noqa: E402
from test_training import smooth_image, smooth_images  # noqa: E402

RECIPES = TESTS.parent / "recipes"
REGISTRY = default_registry()
RLFN = REGISTRY.get("rlfn")
SMALL = RLFN.config(channels=12, mid_channels=10, blocks=3, esa_channels=4, scale=2)


def rlfn_groups(blocks: int):
    import esr_rfdn

    return esr_rfdn.rlfn_channel_groups(blocks)


def random_rlfn(config=SMALL, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = RLFN.build(config).double().eval()
    with torch.no_grad():
        for p in net.parameters():  # biases too: a zero bias would hide a misplaced one
            p.normal_(0, 0.2)
    return net


def rlfn_params(c: int, m: int, blocks: int, f: int, scale: int) -> int:
    """RLFN's parameter count, written out conv by conv (weights + biases)."""
    def conv(i, o, k):
        return i * o * k * k + o
    esa = conv(c, f, 1) + conv(f, f, 1) + conv(f, f, 3) + conv(f, f, 3) + conv(f, c, 1)
    block = conv(c, m, 3) + conv(m, m, 3) + conv(m, c, 3) + conv(c, c, 1) + esa
    return conv(3, c, 3) + blocks * block + conv(c, c, 3) + conv(c, 3 * scale * scale, 3)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four 64x64 smooth HR images: at x4 the LR patch is 16 pixels, above RLFN's minimum input of 15."""
    return smooth_images(tmp_path_factory.mktemp("hr"), 64)


@pytest.fixture
def rlfn_file(tmp_path) -> Path:
    path = tmp_path / "mine.pth"
    torch.save({k: v.float() for k, v in random_rlfn().state_dict().items()}, path)
    return path


# ---- the helpers -------------------------------------------------------------------------------------

def test_scores_selection_and_a_group_cut_everywhere():
    g = pruning.ChannelGroup("g", writers=("a", "b"), readers=("c",), gates=("d",))
    sd = {"a.weight": torch.tensor([[1.0], [2.0], [3.0], [4.0]]), "a.bias": torch.arange(4.0),
          "b.weight": 100 * torch.tensor([[4.0], [3.0], [2.0], [1.0]]), "b.bias": torch.arange(4.0),
          "c.weight": torch.ones(2, 4), "c.bias": torch.zeros(2),
          "d.weight": torch.tensor([[0.0], [9.0], [0.0], [9.0]]), "other": torch.ones(3)}
    # each conv's norms over its mean: a [.4 .8 1.2 1.6], b [1.6 1.2 .8 .4], c [1 1 1 1], d [0 2 0 2]
    scores = pruning.l1_scores(sd, g)
    assert torch.allclose(scores, torch.tensor([3.0, 5.0, 3.0, 5.0], dtype=scores.dtype))
    assert pruning.keep_indices(torch.tensor([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]
    assert pruning.keep_indices(torch.tensor([5.0, 1.0, 5.0, 5.0]), 2).tolist() == [0, 2]  # ties: lower index
    out, kept = pruning.prune_state_dict(sd, [g], 2)
    assert kept["g"].tolist() == [1, 3]
    assert out["a.weight"].flatten().tolist() == [2.0, 4.0] and out["a.bias"].tolist() == [1.0, 3.0]
    assert out["b.weight"].flatten().tolist() == [300.0, 100.0] and out["d.weight"].flatten().tolist() == [9, 9]
    assert out["c.weight"].shape == (2, 2) and torch.equal(out["c.bias"], sd["c.bias"])
    assert torch.equal(out["other"], sd["other"])
    with pytest.raises(EsrError, match="the network has 4; give 1 to 3"):
        pruning.prune_state_dict(sd, [g], 4)
    with pytest.raises(EsrError, match="cannot prune to 0"):
        pruning.prune_state_dict(sd, [g], 0)
    twice = pruning.ChannelGroup("h", writers=("a",), readers=("c", "c"))
    with pytest.raises(ValueError, match="listed twice"):
        pruning.prune_state_dict(sd, [twice], 2)


# ---- RLFN's hook ----------------------------------------------------------------------------------

def test_pruned_rlfn_has_the_smaller_shapes_and_params():
    net = random_rlfn()
    smaller, config = RLFN.prune(net, SMALL, 9)
    assert config == dataclasses.replace(SMALL, channels=9)
    sd = smaller.state_dict()
    assert sd["conv_1.weight"].shape == (9, 3, 3, 3) and sd["conv_2.weight"].shape == (9, 9, 3, 3)
    assert sd["upsampler.0.weight"].shape == (12, 9, 3, 3)
    for b in ("block_1", "block_3"):
        assert sd[f"{b}.c1_r.weight"].shape == (10, 9, 3, 3) and sd[f"{b}.c2_r.weight"].shape == (10, 10, 3, 3)
        assert sd[f"{b}.c3_r.weight"].shape == (9, 10, 3, 3) and sd[f"{b}.c5.weight"].shape == (9, 9, 1, 1)
        assert sd[f"{b}.esa.conv1.weight"].shape == (4, 9, 1, 1) and sd[f"{b}.esa.conv4.weight"].shape == (9, 4, 1, 1)
        assert sd[f"{b}.esa.conv2.weight"].shape == (4, 4, 3, 3)
    before, after = complexity(net.float(), 64, 255.0), complexity(smaller.float(), 64, 255.0)
    assert before["params"] == rlfn_params(12, 10, 3, 4, 2) and after["params"] == rlfn_params(9, 10, 3, 4, 2)
    assert after["macs"] < before["macs"]
    match = REGISTRY.detect({k: v.float() for k, v in sd.items()})
    assert match.architecture.name == "rlfn" and match.config == config


def zero_channels(net: torch.nn.Module, groups, drops: dict[str, list[int]]) -> None:
    """Zero every weight of the channels `drops` names: writers' and gates' rows (and biases), readers' columns."""
    sd = net.state_dict()
    with torch.no_grad():
        for g in groups:
            for conv in (*g.writers, *g.gates):
                sd[f"{conv}.weight"][drops[g.name]] = 0
                sd[f"{conv}.bias"][drops[g.name]] = 0
            for conv in g.readers:
                sd[f"{conv}.weight"][:, drops[g.name]] = 0


@pytest.mark.parametrize("blocks", [3, 1])
def test_pruned_output_equals_the_unpruned_network_when_the_removed_channels_are_zero(blocks):
    config = dataclasses.replace(SMALL, blocks=blocks)
    net = random_rlfn(config)
    groups = rlfn_groups(blocks)
    assert len(groups) == blocks + 1
    g = torch.Generator().manual_seed(3)
    drops = {grp.name: sorted(torch.randperm(12, generator=g)[:4].tolist()) for grp in groups}
    assert len({tuple(d) for d in drops.values()}) > 1  # the spaces lose different channels
    x = torch.rand(1, 3, 20, 23, dtype=torch.float64) * 255
    with torch.no_grad():
        untouched = net(x)
    zero_channels(net, groups, drops)
    with torch.no_grad():
        reference = net(x)
    assert (reference - untouched).abs().max() > 1e-3  # the zeroed channels did carry something
    state, kept = pruning.prune_state_dict(net.state_dict(), groups, 8)
    for grp in groups:
        assert kept[grp.name].tolist() == [i for i in range(12) if i not in drops[grp.name]], grp.name
    smaller, cfg = RLFN.prune(net, config, 8)
    assert all(torch.equal(smaller.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        out = smaller(x)
    assert out.shape == reference.shape
    assert float((out - reference).abs().max()) < 1e-9 * float(reference.abs().max())


def test_pruning_a_trained_like_network_changes_its_output():
    """Without zeroed channels the cut is not free: the equality above is not a property of any pruning."""
    net = random_rlfn()
    smaller, _ = RLFN.prune(net, SMALL, 8)
    x = torch.rand(1, 3, 20, 20, dtype=torch.float64) * 255
    with torch.no_grad():
        assert float((smaller(x) - net(x)).abs().max()) > 1e-3


def test_core_prune_reads_the_config_back_and_refuses_without_a_hook(user_weights):
    sd = {k: v.float() for k, v in random_rlfn().state_dict().items()}
    pruned = pruning.prune(Match(RLFN, SMALL, sd), 5)
    assert pruned.architecture is RLFN and pruned.config == dataclasses.replace(SMALL, channels=5)
    assert "rlfn" in pruning.prunable()
    match = REGISTRY.detect(read_state_dict(user_weights))  # imdn-rtc: no prune hook
    with pytest.raises(EsrError, match="imdn-rtc cannot be pruned.*architectures that can: .*rlfn"):
        pruning.prune(match, 4)
    for bad in (0, -2, True, 3.5):
        with pytest.raises(EsrError, match="cannot prune to"):
            pruning.prune(Match(RLFN, SMALL, sd), bad)


# ---- the command --------------------------------------------------------------------------------

@pytest.fixture
def cli():
    from esr_cli.commands.prune import prune
    from esr_cli.commands.train import finetune

    app = typer.Typer()
    app.command("prune")(prune)
    app.command("finetune")(finetune)
    return app


def test_prune_command_writes_a_model_that_upscale_detects_and_finetune_continues(cli, rlfn_file, tmp_path,
                                                                                  images):
    out = tmp_path / "out" / "small.pth"
    result = CliRunner().invoke(cli, ["prune", str(rlfn_file), "--channels", "7", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"params {rlfn_params(12, 10, 3, 4, 2):,} -> {rlfn_params(7, 10, 3, 4, 2):,}" in result.output
    assert not [p for p in out.parent.iterdir() if p.name != "small.pth"]  # no temporary file left
    match = REGISTRY.detect(read_state_dict(out))
    assert match.architecture.name == "rlfn" and match.config.channels == 7 and match.config.mid_channels == 10
    start = read_state_dict(out)
    result = CliRunner().invoke(cli, ["finetune", "-m", str(out), "-d", str(images), "--iters", "2",
                                      "--set", "data.patch=32", "--set", "data.batch=2", "--set", "data.workers=0",
                                      "--set", "optim.lr=1e-3", "-o", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    tuned = read_state_dict(tmp_path / "ft" / "model.pth")
    assert {k: v.shape for k, v in tuned.items()} == {k: v.shape for k, v in start.items()}
    assert any(not torch.equal(tuned[k], start[k]) for k in start)  # trained from the pruned weights
    smooth_image(tmp_path / "in.png", 20, 9)
    up = esr("upscale", tmp_path / "in.png", "-o", tmp_path / "up", "--model", out, "-q", "--device", "cpu")
    assert up.returncode == 0, up.stderr
    assert Image.open(tmp_path / "up" / "in_x2.png").size == (40, 40)


def test_prune_writes_safetensors(cli, rlfn_file, tmp_path):
    out = tmp_path / "small.safetensors"
    result = CliRunner().invoke(cli, ["prune", str(rlfn_file), "-n", "11", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert REGISTRY.detect(read_state_dict(out)).config.channels == 11


@pytest.mark.parametrize("case, says", [
    ("no-hook", "imdn-rtc cannot be pruned"),
    ("as-wide", "cannot prune to 12 channels: the network has 12; give 1 to 11"),
    ("wider", "cannot prune to 40 channels"),
    ("zero", "cannot prune to 0 channels"),
    ("negative", "cannot prune to -1 channels"),
    ("unwritable", "cannot write there|not a folder"),
    ("folder", "is a folder"),
    ("suffix", r"name a \.pth or \.safetensors file"),
])
def test_prune_user_errors_are_one_line(case, says, rlfn_file, user_weights, tmp_path):
    model, channels, out = rlfn_file, "6", tmp_path / "o.pth"
    if case == "no-hook":
        model = user_weights
    elif case in ("as-wide", "wider", "zero", "negative"):
        channels = {"as-wide": "12", "wider": "40", "zero": "0", "negative": "-1"}[case]
    elif case == "unwritable":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "o.pth"
    elif case == "folder":
        (tmp_path / "dir.pth").mkdir()
        out = tmp_path / "dir.pth"
    elif case == "suffix":
        out = tmp_path / "o.png"
    result = esr("prune", model, "--channels", channels, "-o", out)
    assert re.search(says, one_error(result))
    assert not (tmp_path / "o.pth").exists() and not (tmp_path / "o.png").exists()


def test_prune_zoo_model_by_name(mirror_dir, tmp_path, monkeypatch):
    """rlfn-x4 (52 channels) through the zoo, from the local mirror of the reference weights."""
    monkeypatch.setenv("ESR_MIRROR", str(mirror_dir))
    monkeypatch.setenv("ESR_CACHE", str(tmp_path / "cache"))
    done = pruning.prune_model("rlfn-x4", 46, tmp_path / "rlfn46.pth", quiet=True)
    assert done.before.config.channels == 52 and done.after.config.channels == 46
    assert done.params == (543_740, rlfn_params(46, 52, 6, 16, 4))
    match = REGISTRY.detect(read_state_dict(tmp_path / "rlfn46.pth"))
    assert match.architecture.name == "rlfn" and match.config == done.after.config


# ---- prune stages in recipes ---------------------------------------------------------------------

def test_prune_stage_table_is_checked():
    base = ["model.arch='rlfn'"]
    recipe = load_recipe(None, base)
    recipe["stages"] = [{"name": "p", "prune": {"channels": 4}}]
    assert stages_of(recipe)[0][1]["prune"] == {"channels": 4}
    for bad in ({"channels": 0}, {"channels": "4"}, {"width": 4}, 4, {"channels": 4, "x": 1}):
        recipe["stages"] = [{"name": "p", "prune": bad}]
        with pytest.raises(EsrError, match="stage p: prune = .*expected"):
            stages_of(recipe)
    with pytest.raises(EsrError, match="unknown key prune"):
        load_recipe(None, [*base, "prune.channels=4"])


def test_set_wins_over_the_stages_own_values():
    recipe = load_recipe(RECIPES / "rlfn_ntire2022.toml", ["train.iters=3", "optim.lr=1e-4", "name='n'"])
    stages = dict(stages_of(recipe))
    assert all(s["train"]["iters"] == 3 for s in stages.values())  # 6-mse sets iters = 100000 itself
    assert stages["6-mse"]["optim"]["lr"] == 1e-4 and stages["6-mse"]["loss"] == {"MSE": 1.0}
    assert list(stages) == ["1-scratch", "2-warm-start", "3-warm-start", "4-contrastive", "5-prune", "6-mse"]


def test_the_rlfn_ntire2022_recipe_runs_end_to_end(tmp_path, images):
    """All six stages on a tiny CPU budget: L1 from scratch, two warm starts, L1 + 255 Contrastive, prune 48 -> 46,
    MSE on the pruned network, which ends in the NTIRE 2022 file's shape (46 channels, mid 48, 4 blocks)."""
    recipe = load_recipe(RECIPES / "rlfn_ntire2022.toml", [
        f"data.train=['{images}']", "data.patch=64", "data.batch=2", "data.workers=0", "train.iters=2",
        "train.log_every=1", "train.checkpoint_every=2", f"val.folder='{images}'", "val.every=2"])
    final = run(recipe, tmp_path / "run")
    assert final == tmp_path / "run" / "6-mse" / "model.pth"
    before = read_state_dict(tmp_path / "run" / "4-contrastive" / "model.pth")
    pruned = read_state_dict(tmp_path / "run" / "5-prune" / "model.pth")
    assert REGISTRY.detect(before).config == RLFN.config(channels=48, mid_channels=48, blocks=4, esa_channels=16)
    shipped = RLFN.config(channels=46, mid_channels=48, blocks=4, esa_channels=16, scale=4)
    assert REGISTRY.detect(pruned).config == shipped
    last = REGISTRY.detect(read_state_dict(final))
    assert last.config == shipped
    assert any(not torch.equal(read_state_dict(final)[k], pruned[k]) for k in pruned)  # the MSE stage trained
    assert not (tmp_path / "run" / "5-prune" / "last.pt").exists()  # nothing trained in the prune stage
    again = run(recipe, tmp_path / "run", resume=True)  # everything finished: skipped, the same weights
    assert again == final
    with pytest.raises(EsrError, match="holds a run already"):
        run(recipe, tmp_path / "run")
