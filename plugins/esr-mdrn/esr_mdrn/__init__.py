"""The MDRN architecture for esr, with the authors' MDRN (x2/x3/x4) and MDRN-S (NTIRE 2023, x4) weights."""

from __future__ import annotations

from esr_cli import Architecture, Challenge, StateDict, Weights, shuffle_scale

from .mdrn import MIN_SIZE, MDRN, STRIDE, MDRNConfig

__all__ = ["MDRN", "MDRNConfig", "mdrn"]

_REPO = "https://github.com/bbbolt/MDRN"
_FILES = "https://raw.githubusercontent.com/bbbolt/MDRN/a919ff291f96bb7ab6267da52a8a8db4354fc653/pretrain_models"
_BENCHMARKS = ("Set5", "Set14", "B100", "Urban100", "Manga109")


def _published(*rows: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return dict(zip(_BENCHMARKS, rows, strict=True))


def read_config(state_dict: StateDict, scale: int | None = None) -> MDRNConfig:
    """Channels from `fea_conv`, blocks from the width of the `c1` fusion conv, scale from the upsampler."""
    num_feat = state_dict["fea_conv.weight"].shape[0]
    return MDRNConfig(
        num_feat=num_feat,
        num_blocks=state_dict["c1.weight"].shape[1] // num_feat,
        scale=shuffle_scale(state_dict["upsampler.upsampleOneStep.0.weight"].shape[0]),
    )


WEIGHTS = (
    Weights(
        name="mdrn-x2", scale=2, url=f"{_FILES}/mdrn_x2.pth",
        sha256="a4c9729d0003fb428ebef1902c411f1d43d14e4d96b800ae8f03a92424dba8e7",
        license="MIT", source=_REPO, params=303_724, variant="paper model (56 ch, 8 EADB)",
        published=_published((38.1094, 0.9610), (33.8357, 0.9205), (32.3177, 0.9016), (32.8438, 0.9350),
                             (39.1376, 0.9782)),
        reference_psnr=38.0964,
    ),
    Weights(
        name="mdrn-x3", scale=3, url=f"{_FILES}/mdrn_x3.pth",
        sha256="5b782ea1c3e25ac0aebc8b5eb533bdcc682fb54c11d7ae2e112535db6818d25d",
        license="MIT", source=_REPO, params=311_299, variant="paper model (56 ch, 8 EADB)",
        published=_published((34.5799, 0.9286), (30.5073, 0.8453), (29.2077, 0.8081), (28.6979, 0.8627),
                             (34.0709, 0.9476)),
        reference_psnr=34.5781,
    ),
    Weights(
        name="mdrn-x4", scale=4, url=f"{_FILES}/mdrn_x4.pth",
        sha256="c9ad9752bd01feca8b9e3a703cfc2a211ee5eb39d1d67b402d65acf98998f137",
        license="MIT", source=_REPO, params=321_904, variant="paper model (56 ch, 8 EADB)",
        published=_published((32.3466, 0.8970), (28.7979, 0.7861), (27.6927, 0.7404), (26.5958, 0.8005),
                             (31.0164, 0.9146)),
        reference_psnr=32.3466,
    ),
    Weights(
        name="mdrn-s-x4", scale=4, url=f"{_FILES}/mdrn-s.pth",
        sha256="45f284838a431164375cb11f6f5d7a6e02a5015bcefa21b82f1a5bba34ccb9a9",
        license="MIT", source=_REPO, params=95_396, variant="MDRN-S, NTIRE 2023 ESR entry (28 ch, 8 EADB)",
        reference_psnr=32.0609,
        challenge=Challenge("NTIRE 2023 ESR", 2023, team="MDRN", params_m=0.095, flops_g=5.58, activations_m=220.88,
                            source="third-party study deck (shared/seeds), secondary"),
    ),
)

mdrn = Architecture(
    name="mdrn",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.06% of pixels differ by 1 level (16: up to 4 levels)
    min_size=MIN_SIZE,
    tile_grid=STRIDE,
    model=MDRN,
    config=MDRNConfig,
    detect=(
        "fea_conv.weight",
        "B1.c1_r.pw.weight",
        "B1.esa.body.0.conv2_3.dw.weight",
        "B1.cca.body.2.conv_du.0.weight",
        "c1.weight",
        "upsampler.upsampleOneStep.0.weight",
    ),
    read_config=read_config,
    paper="Multi-level Dispersion Residual Network for Efficient Image Super-Resolution (Mao et al., CVPRW 2023)",
    scales=(2, 3, 4),
    input_range=1.0,
    # Set5 change, weights converted (benchmarks/precision.py): 4 files: fp16 >= -0.0024 dB, bf16 >= -0.0307 dB
    precisions=("fp16", "bf16"),
    weights=WEIGHTS,
)
