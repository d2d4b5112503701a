"""esr plugin: MobileSR (NJUST_ESR), the NTIRE 2022 ESR model-complexity winner (joint with BSRN)."""

from __future__ import annotations

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .mobilesr import WINDOW, MobileSR, MobileSRConfig

__all__ = ["mobilesr", "MobileSR", "MobileSRConfig"]

REPO = "ofsoundof/NTIRE2022_ESR"
RAW = f"https://raw.githubusercontent.com/{REPO}/e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo"


def read_config(sd: StateDict, scale: int | None = None) -> MobileSRConfig:
    channels = sd["head.weight"].shape[0]
    ratios = tuple(sd[f"body.layers.{i}.1.net.0.weight"].shape[0] // channels
                   for i in range(count_blocks(sd, "body.layers")))
    if "upsapling.2.weight" in sd:  # x4: two (1x1 conv, pixel shuffle by 2) steps
        scale = 4
    else:
        scale = shuffle_scale(sd["upsapling.0.weight"].shape[0], channels)
    return MobileSRConfig(channels=channels, ratios=ratios, scale=scale)


FLOPS_NOTE = ("FLOPs 8.73 G is the organisers' counter, whose Linear hook multiplies dims 0 and 1 of input and "
              "output: windows x 64 x 64 for the attention's token inputs, H x W for the MLP's, so the Linears "
              "(5.03 G) and the attention products (1.68 G, not hooked) are left out; its 8.73 G = convolutions "
              "8.57 G + 0.16 G of LeakyReLU elements and Linear remnants. Convolutions, Linears and attention "
              "products: 15.28 G")


mobilesr = Architecture(
    name="mobilesr",
    model=MobileSR,
    config=MobileSRConfig,
    detect=("head.weight", "body.layers.0.0.pos_embed.weight", "body.layers.0.0.attn.qkv.weight",
            "body.layers.0.1.net.0.weight", "fuse.weight", "upsapling.0.weight", "tail.weight"),
    read_config=read_config,
    paper="MobileSR, NJUST_ESR's entry to the NTIRE 2022 Efficient Super-Resolution Challenge (team20)",
    scales=(2, 3, 4),
    input_range=1.0,
    # The network zero-pads to whole 8x8 windows itself, as the authors' code does (no size_multiple: the engine's
    # reflect padding would change the output). Tiles start on the window grid and the last one ends on the image's
    # edge, so every window's attention sees the whole image's padding.
    tile_grid=WINDOW,
    tile_overlap=24,  # Set5 + Set14 x4 LR, tiles of 64: at most 1 level, on <= 0.05% of an image (16: 0.2%)
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0009 dB, bf16 -0.0102 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights(
            name="mobilesr-x4",
            scale=4,
            url=f"{RAW}/team20_mobilesr.pth",
            sha256="5fb0e02130258bc5af2e470d3e62f95e162320d1260a09a12d61218af33215fe",
            license="MIT",
            source=f"https://github.com/{REPO}",
            params=175_883,
            variant="NTIRE 2022 ESR entry (team20): 40 ch, 5 stages, ratios 4-2-2-2-4",
            reference_psnr=32.0505,
            challenge=Challenge(
                "NTIRE 2022 ESR", 2022, ranks={"complexity": 1, "overall": 15, "runtime": 28}, team="NJUST_ESR",
                params_m=0.176, flops_g=8.73, activations_m=160.43, convs=25, runtime_ms=164.8, memory_mb=1346.74,
                gpu="Titan Xp", val_psnr=28.96, test_psnr=28.68,
                source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)",
                note=FLOPS_NOTE),
        ),
    ),
)
