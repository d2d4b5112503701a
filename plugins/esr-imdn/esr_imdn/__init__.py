"""The IMDN family as esr architectures: the ACM MM 2019 paper network and its challenge variants."""

from __future__ import annotations

import re

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .imdn import IMDN, IMDNConfig
from .imdn_plus import IMDNPlus, IMDNPlusConfig
from .imdn_rtc import IMDNRTC, IMDNBaseline, IMDNBaselineConfig, IMDNRTCConfig
from .imdn_rte import IMDNRTE, IMDNRTEConfig

__all__ = ["imdn", "imdn_rtc", "imdn_ntire22", "imdn_plus", "imdn_rte"]

PAPER = "Hui et al., Lightweight Image Super-Resolution with Information Multi-distillation Network, ACM MM 2019"
IMDN_REPO = "https://github.com/Zheng222/IMDN"
IMDN_FILES = "https://raw.githubusercontent.com/Zheng222/IMDN/8f158e6a5ac9db6e5857d9159fd4a6c4214da574/checkpoints"
NTIRE22_REPO = "https://github.com/ofsoundof/NTIRE2022_ESR"
NTIRE22_FILES = ("https://raw.githubusercontent.com/ofsoundof/NTIRE2022_ESR/"
                 "e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo")


def _imdn_config(sd: StateDict, scale: int | None) -> IMDNConfig:
    return IMDNConfig(channels=sd["fea_conv.weight"].shape[0],
                      blocks=count_blocks(sd, "IMDB"),
                      scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]))


def _sequential_config(config: type, sd: StateDict):
    """channels, blocks and scale of the RTC-style tree `model.0` (head), `model.1.sub.*` (trunk), `model.2` (tail)."""
    return config(channels=sd["model.0.weight"].shape[0],
                  blocks=count_blocks(sd, "model.1.sub") - 1,  # the trunk's last child is a plain conv
                  scale=shuffle_scale(sd["model.2.weight"].shape[0]))


def _plus_config(sd: StateDict, scale: int | None) -> IMDNPlusConfig:
    return IMDNPlusConfig(channels=sd["FEM.0.weight"].shape[0],
                          blocks=count_blocks(sd, "FEM.1.sub") - 1,  # the trunk's last child is a plain conv
                          scale=shuffle_scale(sd["RM.0.weight"].shape[0]))


def _rte_config(sd: StateDict, scale: int | None) -> IMDNRTEConfig:
    shuffle = shuffle_scale(sd["upsampler.0.weight"].shape[0])
    if shuffle % 2:
        raise ValueError(f"pixel shuffle by {shuffle} after a stride-2 head is not an integer scale")
    return IMDNRTEConfig(channels=sd["fea_conv.0.weight"].shape[0],
                         blocks=count_blocks(sd, "block"),
                         scale=shuffle // 2)


_KAIR_NAMES = {"conv1.0": "c1", "conv2.0": "c2", "conv3.0": "c3", "conv4": "c4", "conv1x1": "c5"}
_KAIR_KEY = re.compile(r"^(model\.1\.sub\.\d+)\.(conv[123]\.0|conv4|conv1x1)\.")


def kair_to_rtc(sd: StateDict) -> StateDict:
    """Renames KAIR's `IMDBlock` children (conv1.0 .. conv1x1) to the RTC block's (c1 .. c5); other keys unchanged."""
    return {_KAIR_KEY.sub(lambda m: f"{m[1]}.{_KAIR_NAMES[m[2]]}.", k): v for k, v in sd.items()}


imdn = Architecture(
    name="imdn",
    model=IMDN,
    config=IMDNConfig,
    detect=("fea_conv.weight", "IMDB1.c1.weight", "IMDB1.cca.conv_du.0.weight", "c.0.weight", "upsampler.0.weight"),
    read_config=_imdn_config,
    paper=PAPER,
    # Set5 change, weights converted (benchmarks/precision.py): x2/x3/x4 fp16 >= -0.0022 dB, bf16 >= -0.0297 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights("imdn-x2", 2, f"{IMDN_FILES}/IMDN_x2.pth",
                "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1", "none", IMDN_REPO, 694404,
                variant="paper (64 ch, 6 IMDB)",
                published={"Set5": (38.00, 0.9605), "Set14": (33.63, 0.9177), "B100": (32.19, 0.8996),
                           "Urban100": (32.17, 0.9283), "Manga109": (38.88, 0.9774)},
                reference_psnr=37.996),
        Weights("imdn-x3", 3, f"{IMDN_FILES}/IMDN_x3.pth",
                "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028", "none", IMDN_REPO, 703059,
                variant="paper (64 ch, 6 IMDB)",
                published={"Set5": (34.36, 0.9270), "Set14": (30.32, 0.8417), "B100": (29.09, 0.8046),
                           "Urban100": (28.17, 0.8519), "Manga109": (33.61, 0.9445)},
                reference_psnr=34.3597),
        Weights("imdn-x4", 4, f"{IMDN_FILES}/IMDN_x4.pth",
                "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714", "none", IMDN_REPO, 715176,
                variant="paper (64 ch, 6 IMDB)",
                published={"Set5": (32.21, 0.8948), "Set14": (28.58, 0.7811), "B100": (27.56, 0.7353),
                           "Urban100": (26.04, 0.7838), "Manga109": (30.45, 0.9075)},
                reference_psnr=32.2096),
    ),
)

imdn_rtc = Architecture(
    name="imdn-rtc",
    model=IMDNRTC,
    config=IMDNRTCConfig,
    detect=("model.0.weight", "model.1.sub.0.c1.weight", "model.1.sub.0.c5.weight", "model.2.weight"),
    read_config=lambda sd, scale: _sequential_config(IMDNRTCConfig, sd),
    paper=PAPER + " (AI in RTC 2019 winning variant)",
    weights=(
        Weights("imdn-rtc-x2", 2, f"{IMDN_FILES}/model_RTC.pth",
                "5696ca25971477a93f2a3f3b235039e30afefff1bb560efdc48c0f880635a2ab", "none", IMDN_REPO, 20190,
                variant="AI in RTC 2019 winner (12 ch, 5 blocks, no CCA)",
                reference_psnr=37.3114),
    ),
)

imdn_ntire22 = Architecture(
    name="imdn-ntire22",
    model=IMDNBaseline,
    config=IMDNBaselineConfig,
    detect=imdn_rtc.detect,
    read_config=lambda sd, scale: _sequential_config(IMDNBaselineConfig, sd),
    paper=PAPER + " (NTIRE 2022 ESR baseline, KAIR version)",
    convert=kair_to_rtc,
    # Set5 change, weights converted (benchmarks/precision.py): 2 files: fp16 >= -0.0004 dB, bf16 >= -0.0090 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights("imdn-ntire22-x4", 4, f"{NTIRE22_FILES}/imdn_baseline.pth",
                "115b4cc557eba9daaf1a6543c4858014c7e2a410655aafef7c8348ae54acc203", "MIT", NTIRE22_REPO, 893936,
                variant="NTIRE 2022 ESR baseline (64 ch, 8 blocks, no CCA)",
                reference_psnr=32.2468,
                challenge=Challenge("NTIRE 2022 ESR", 2022, team="baseline", params_m=0.894, flops_g=58.53, activations_m=154.14,
                                    convs=43, runtime_ms=50.86, memory_mb=471.76, val_psnr=29.13, test_psnr=28.78,
                                    gpu="Titan Xp", source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
        Weights("imdn-ntire22-nb7-x4", 4, f"{NTIRE22_FILES}/team26_imdn_nb7.pth",
                "c8bd64b7eebe5d955c00fb5626385e13fa5775518be77a265f3f74b5e33e55a7", "MIT", NTIRE22_REPO, 790496,
                variant="NTIRE 2022 ESR team xilinxSR: the baseline with 7 blocks (64 ch, no CCA)",
                reference_psnr=32.2064,
                challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"runtime": 16, "complexity": 34, "overall": 22},
                                    team="xilinxSR", params_m=0.790, flops_g=51.76, activations_m=136.31, convs=38,
                                    runtime_ms=48.20, memory_mb=471.37, val_psnr=29.05, test_psnr=28.75,
                                    gpu="Titan Xp",
                                    source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)

imdn_plus = Architecture(
    name="imdn-plus",
    model=IMDNPlus,
    config=IMDNPlusConfig,
    detect=("FEM.0.weight", "FEM.1.sub.0.c1.weight", "FEM.1.sub.0.c7.weight", "RM.0.weight"),
    read_config=_plus_config,
    paper="Hui, IMDN+ (NTIRE 2022 Efficient SR challenge, team39 rainbow)",
    weights=(
        Weights("imdn-plus-x4", 4, f"{NTIRE22_FILES}/team39_imdn_plus.pth",
                "0051dcbeb82684fef3981eff81df86bb167b8f9602323fa37f82f8c5566ff5a9", "MIT", NTIRE22_REPO, 275844,
                variant="NTIRE 2022 ESR team39 (36 ch, 8 blocks, re-parameterized)",
                published={"Set5": (32.11, 0.8934), "Set14": (28.63, 0.7823), "B100": (27.58, 0.7358),
                           "Urban100": (26.10, 0.7846), "Manga109": (30.55, 0.9072)},
                reference_psnr=32.1327,
                challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"runtime": 6}, team="rainbow", params_m=0.276, flops_g=17.98,
                                    activations_m=92.80, convs=59, runtime_ms=34.10, memory_mb=309.23,
                                    val_psnr=29.01, test_psnr=28.74, gpu="Titan Xp", source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)

imdn_rte = Architecture(
    name="imdn-rte",
    model=IMDNRTE,
    config=IMDNRTEConfig,
    detect=("fea_conv.0.weight", "fea_conv.2.weight", "block1.c7.weight", "LR_conv.weight", "upsampler.0.weight"),
    read_config=_rte_config,
    paper=PAPER + " (AI in RTE 2020 variant)",
    input_range=255.0,
    size_multiple=2,
    weights=(
        Weights("imdn-rte-x2", 2, f"{IMDN_FILES}/model_RTE.pth",
                "4f5df6feb541d3904e1bceb9d7444bde3a8068d91c22941f4c83247663081c7d", "none", IMDN_REPO, 89748,
                variant="AI in RTE 2020 (20 ch); trained for downsampling+noise, not bicubic"),
    ),
)
