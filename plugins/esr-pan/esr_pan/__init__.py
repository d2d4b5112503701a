"""esr plugin: PAN, the pixel-attention network (Zhao et al., ECCVW/AIM 2020)."""

from __future__ import annotations

from dataclasses import dataclass

from esr_cli import Architecture, StateDict, Weights, count_blocks

from .pan import PAN

__all__ = ["PANConfig", "pan"]

URL = "https://raw.githubusercontent.com/zhaohengyuan1/PAN/4d045d18592c5771cd3990da88f292812774e538/experiments/pretrained_models"
SOURCE = "https://github.com/zhaohengyuan1/PAN"


@dataclass(frozen=True)
class PANConfig:
    nf: int = 40
    unf: int = 24
    nb: int = 16
    scale: int = 4


def read_config(sd: StateDict, scale: int | None = None) -> PANConfig:
    """x4 has a second U-PA stage; x2 and x3 have the same tensors, so for them the scale hint decides."""
    if "upconv2.weight" in sd:
        read = 4
    elif scale in (2, 3):
        read = scale
    else:
        raise ValueError("a one-stage PAN is x2 or x3 (same tensors): give the scale" if scale is None
                         else f"a one-stage PAN is x2 or x3, not x{scale}")
    sizes = dict(nf=sd["conv_first.weight"].shape[0], unf=sd["upconv1.weight"].shape[0])
    return PANConfig(**sizes, nb=count_blocks(sd, "SCPA_trunk"), scale=read)


def _weights(scale: int, sha256: str, params: int, published: dict) -> Weights:
    return Weights(
        name=f"pan-x{scale}",
        scale=scale,
        url=f"{URL}/PANx{scale}_DF2K.pth",
        sha256=sha256,
        license="none",
        source=SOURCE,
        params=params,
        variant="paper (40 ch, unf 24, 16 SCPA; DF2K)",
        published=published,
        reference_psnr={2: 38.0007, 3: 34.4003, 4: 32.1311}[scale],
    )


# Y-channel (PSNR, SSIM) from the authors' test logs, results/PANx{s}_DF2K/test_*.log
pan = Architecture(
    name="pan",
    model=PAN,
    config=PANConfig,
    detect=("conv_first.weight", "SCPA_trunk.0.PAConv.k2.weight", "trunk_conv.weight", "upconv1.weight",
            "att1.conv.weight", "HRconv1.weight", "conv_last.weight"),
    read_config=read_config,
    paper="Zhao et al., Efficient Image Super-Resolution Using Pixel Attention, ECCV Workshops (AIM) 2020",
    scales=(2, 3, 4),
    input_range=1.0,
    weights=(
        _weights(2, "fcf8ed48656abbaae46309ee91745684b80235a9c8b37a2d8fb0715a3ad3f00f", 261403, {
            "Set5": (38.000670, 0.960488), "Set14": (33.592740, 0.918051), "B100": (32.181226, 0.899731),
            "Urban100": (32.014669, 0.927327), "Manga109": (38.700628, 0.977292)}),
        _weights(3, "86491751d73645a8816a0d6ec62ccde6b22ce5da930e36b3b87f5437167fbc89", 261403, {
            "Set5": (34.400281, 0.927170), "Set14": (30.355270, 0.842204), "B100": (29.104549, 0.804906),
            "Urban100": (28.106838, 0.851039), "Manga109": (33.583278, 0.944755)}),
        _weights(4, "739fab99ee7b7058dab4d1b84aa2869bb9fc3995a1c08789c20355bee943833c", 272419, {
            "Set5": (32.131149, 0.894811), "Set14": (28.610749, 0.782151), "B100": (27.591421, 0.736271),
            "Urban100": (26.106035, 0.785436), "Manga109": (30.514452, 0.909515)}),
    ),
)
