"""EDSR and MDSR as esr architectures: configs read back from checkpoint shapes, and the authors' baseline weights."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from esr_cli import Architecture, StateDict, Weights, count_blocks, shuffle_scale

from .edsr import EDSR
from .mdsr import BRANCH_SCALES, MDSR

PAPER = "Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017"
SOURCE = "https://github.com/sanghyun-son/EDSR-PyTorch"
MODELS = "https://cv.snu.ac.kr/research/EDSR/models"


@dataclass(frozen=True)
class EDSRConfig:
    """Defaults are the paper's EDSR (32 blocks of 256 features, residual scaling 0.1)."""

    scale: int = 4
    n_resblocks: int = 32
    n_feats: int = 256
    res_scale: float = 0.1


@dataclass(frozen=True)
class MDSRConfig:
    """Defaults are the paper's MDSR (80 blocks of 64 features); `scale` picks one of the branches x2, x3, x4."""

    scale: int = 4
    n_resblocks: int = 80
    n_feats: int = 64


def upsampler_scale(sd: StateDict, prefix: str, n_feats: int) -> int:
    """The scale of an Upsampler at `prefix`: the product of its convs' pixel-shuffle factors."""
    convs = [k for k in sd if re.fullmatch(rf"{re.escape(prefix)}\.\d+\.weight", k)]
    return math.prod(shuffle_scale(sd[k].shape[0], n_feats) for k in convs)


def read_edsr_config(sd: StateDict, scale: int | None = None) -> EDSRConfig:
    n_feats = sd["head.0.weight"].shape[0]
    # res_scale is not stored in the checkpoint: the authors use 0.1 only for the wide 256-feature EDSR
    # (EDSR_paper template) and 1 for the 64-feature baseline, so it is tied to the width here.
    return EDSRConfig(scale=upsampler_scale(sd, "tail.0", n_feats), n_resblocks=count_blocks(sd, "body") - 1,
                      n_feats=n_feats, res_scale=0.1 if n_feats >= 256 else 1.0)


def read_mdsr_config(sd: StateDict, scale: int | None = None) -> MDSRConfig:
    """One MDSR file holds every branch, so the scale comes from the hint (default 4), not from the shapes."""
    scale = scale or 4
    if scale not in BRANCH_SCALES:
        raise ValueError(f"MDSR has branches for x{BRANCH_SCALES}, not x{scale}")
    return MDSRConfig(scale=scale, n_resblocks=count_blocks(sd, "body") - 1, n_feats=sd["head.0.weight"].shape[0])


BASELINE_PUBLISHED = {  # SAFMN ICCV'23 efficient-SR table (secondary source), Y channel
    2: {"Set5": (37.99, 0.9604), "Set14": (33.57, 0.9175), "B100": (32.16, 0.8994),
        "Urban100": (31.98, 0.9272), "Manga109": (38.54, 0.9769)},
    3: {"Set5": (34.37, 0.9270), "Set14": (30.28, 0.8417), "B100": (29.09, 0.8052),
        "Urban100": (28.15, 0.8527), "Manga109": (33.45, 0.9439)},
    4: {"Set5": (32.09, 0.8938), "Set14": (28.58, 0.7813), "B100": (27.57, 0.7357),
        "Urban100": (26.04, 0.7849), "Manga109": (30.35, 0.9067)},
}
BASELINE_FILES = {  # scale: (file, sha256, tensor elements incl. the two MeanShift convs)
    2: ("edsr_baseline_x2-1bc95232.pt", "1bc9523228fdc3b0a5ddb0d7062001e22b31bbb398ae09cfdefb97e8ee06e171", 1_369_883),
    3: ("edsr_baseline_x3-abf2a44e.pt", "abf2a44e7a137228efa42a4264a23e12603168d43ac7596b1adef40c649b9240", 1_554_523),
    4: ("edsr_baseline_x4-6b446fab.pt", "6b446fab734f4de74448d2fd1f3f990f5bae726e49dc7eff2ae9cefe444a1723", 1_517_595),
}
MDSR_BASELINE_SHA256 = "a00cab12f80c2a7cf0a15c3b9fcae3cfe9273121e8942692303e5010d1dca5ef"

edsr = Architecture(
    name="edsr",
    model=EDSR,
    config=EDSRConfig,
    detect=("sub_mean.weight", "head.0.weight", "body.0.body.0.weight", "tail.0.0.weight", "tail.1.weight"),
    read_config=read_edsr_config,
    paper=PAPER,
    input_range=255.0,
    precisions=(),  # not measured: no official weights file could be obtained
    weights=tuple(
        Weights(name=f"edsr-baseline-x{s}", scale=s, url=f"{MODELS}/{file}", sha256=sha, license="MIT",
                source=SOURCE, params=params, variant="EDSR baseline (16 blocks, 64 features)",
                published=BASELINE_PUBLISHED[s])
        for s, (file, sha, params) in BASELINE_FILES.items()
    ),
)

mdsr = Architecture(
    name="mdsr",
    model=MDSR,
    config=MDSRConfig,
    detect=("sub_mean.weight", "head.0.weight", "pre_process.0.0.body.0.weight", "upsample.0.0.weight",
            "tail.0.weight"),
    read_config=read_mdsr_config,
    paper=PAPER,
    scales=BRANCH_SCALES,
    input_range=255.0,
    precisions=(),  # not measured: no official weights file could be obtained
    weights=tuple(
        Weights(name=f"mdsr-baseline-x{s}", scale=s, url=f"{MODELS}/mdsr_baseline-a00cab12.pt",
                sha256=MDSR_BASELINE_SHA256, license="MIT", source=SOURCE, params=3_227_227,
                variant=f"MDSR baseline (16 blocks, 64 features), x{s} branch of the x2/x3/x4 file")
        for s in BRANCH_SCALES
    ),
)

__all__ = ["edsr", "mdsr", "EDSR", "MDSR", "EDSRConfig", "MDSRConfig"]
