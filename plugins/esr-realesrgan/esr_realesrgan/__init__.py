"""esr plugin: Real-ESRGAN's public models (xinntao/Real-ESRGAN): the compact SRVGGNetCompact networks
(`compact`) and the ESRGAN generator RRDBNet (`esrgan`), which also reads the key layouts of the original ESRGAN
files so that community ESRGAN-family x4 files load."""

from __future__ import annotations

import re

from esr_cli import Architecture, StateDict, Weights, count_blocks, shuffle_scale

from .compact import Compact, CompactConfig
from .rrdbnet import UNSHUFFLE, RRDBNet, RRDBNetConfig

__all__ = ["compact", "esrgan", "Compact", "CompactConfig", "RRDBNet", "RRDBNetConfig", "convert_esrgan"]

SOURCE = "https://github.com/xinntao/Real-ESRGAN"
RELEASES = f"{SOURCE}/releases/download"
LICENSE = "BSD-3-Clause"
PAPER = ("Wang et al., Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data, ICCVW 2021 "
         "(arXiv 2107.10833)")
CONV_KEY = re.compile(r"^body\.(\d+)\.weight$")


def read_compact(sd: StateDict, scale: int | None = None) -> CompactConfig:
    convs = sorted(int(m.group(1)) for key in sd if (m := CONV_KEY.match(key)) and sd[key].ndim == 4)
    if "body.1.weight" not in sd:
        raise ValueError("no PReLU slopes (body.1.weight): relu and leakyrelu have no tensors, so the file cannot "
                         "tell which of the two it was trained with")
    return CompactConfig(features=sd["body.0.weight"].shape[0], convs=len(convs) - 2, activation="prelu",
                         scale=shuffle_scale(sd[f"body.{convs[-1]}.weight"].shape[0]))


def read_esrgan(sd: StateDict, scale: int | None = None) -> RRDBNetConfig:
    unshuffle = {3 * r * r: s for s, r in UNSHUFFLE.items()}
    return RRDBNetConfig(features=sd["conv_first.weight"].shape[0], blocks=count_blocks(sd, "body"),
                         growth=sd["body.0.rdb1.conv1.weight"].shape[0],
                         scale=unshuffle[sd["conv_first.weight"].shape[1]])


# The original ESRGAN release (RRDB_ESRGAN_x4.pth, an nn.Sequential): model.0 conv_first, model.1.sub.<i> the RRDBs
# and after them the trunk conv, model.3 / model.6 the upsampling convs, model.8 the HR conv, model.10 the last.
ORIGINAL = {"model.0.": "conv_first.", "model.3.": "conv_up1.", "model.6.": "conv_up2.", "model.8.": "conv_hr.",
            "model.10.": "conv_last."}
ORIGINAL_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.")
# xinntao/ESRGAN RRDBNet_arch.py (the layout of its later releases and most community files).
OLD_ARCH = {"RRDB_trunk.": "body.", "trunk_conv.": "conv_body.", "upconv1.": "conv_up1.", "upconv2.": "conv_up2.",
            "HRconv.": "conv_hr."}
OLD_RDB = re.compile(r"^body\.(\d+)\.RDB(\d)\.")


def convert_esrgan(sd: StateDict) -> StateDict:
    """The two older ESRGAN key layouts of the same x4 network onto BasicSR's (returns other layouts unchanged)."""
    if "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        trunk = f"model.1.sub.{count_blocks(sd, 'model.1.sub') - 1}."
        renamed = {}
        for key, tensor in sd.items():
            if key.startswith(trunk):
                key = "conv_body." + key[len(trunk):]
            elif m := ORIGINAL_RDB.match(key):
                key = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}." + key[m.end():]
            else:
                key = next((new + key[len(old):] for old, new in ORIGINAL.items() if key.startswith(old)), key)
            renamed[key] = tensor
        return renamed
    if "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        renamed = {}
        for key, tensor in sd.items():
            key = next((new + key[len(old):] for old, new in OLD_ARCH.items() if key.startswith(old)), key)
            renamed[OLD_RDB.sub(lambda m: f"body.{m.group(1)}.rdb{m.group(2)}.", key)] = tensor
        return renamed
    return sd


def _release(name: str, tag: str, file: str, sha256: str, params: int, variant: str,
             denoise_partner: str | None = None) -> Weights:
    return Weights(name=name, scale=int(name[-1]), url=f"{RELEASES}/{tag}/{file}", sha256=sha256, license=LICENSE,
                   source=SOURCE, params=params, variant=variant, denoise_partner=denoise_partner)


compact = Architecture(
    name="compact",
    model=Compact,
    config=CompactConfig,
    detect=("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"),
    read_config=read_compact,
    paper=PAPER + "; the compact network: SRVGGNetCompact, realesrgan/archs/srvgg_arch.py",
    scales=(1, 2, 3, 4),
    # Set5 x4 Y-PSNR, CPU autocast, on the ncnn-converted tensors of /work/shared/realworld (not the official files):
    # bf16 -0.0259 dB (general) / -0.0091 dB (animevideo), fp16 +0.0007 / +0.0008 dB; no fp32 reruns.
    # Set5 change, weights converted (benchmarks/precision.py): ncnn conversions: fp16 >= 0.0000 dB, bf16 >= -0.0129 dB
    precisions=("fp16", "bf16"),
    # Set14 x4, tiles of 64, general: overlap 24 gave up to 2 levels (2.4% of pixels), 32 gives 1 level (0.72%)
    tile_overlap=32,
    weights=(
        _release("realesr-general-v3-x4", "v0.2.5.0", "realesr-general-x4v3.pth",
                 "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", 1_213_296,
                 "realesr-general-x4v3: real-world photos, small (64 ch, 32 convs, PReLU); denoises",
                 # --denoise S blends it with the wdn model, as the authors' inference_realesrgan.py -dn does
                 denoise_partner="realesr-general-wdn-v3-x4"),
        _release("realesr-general-wdn-v3-x4", "v0.2.5.0", "realesr-general-wdn-x4v3.pth",
                 "1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca", 1_213_296,
                 "realesr-general-wdn-x4v3: photos with their noise kept (the -dn 0 end of the authors' blend)"),
        _release("realesr-animevideov3-x4", "v0.2.5.0", "realesr-animevideov3.pth",
                 "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d", 621_424,
                 "realesr-animevideov3: anime video, extra small (64 ch, 16 convs, PReLU)"),
    ),
)

esrgan = Architecture(
    name="esrgan",
    model=RRDBNet,
    config=RRDBNetConfig,
    detect=("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.weight"),
    read_config=read_esrgan,
    paper="Wang et al., ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, ECCVW 2018 "
          "(arXiv 1809.00219); the x2/x1 pixel-unshuffle input and the weights: " + PAPER,
    scales=(1, 2, 4),
    # No precision declared: no RRDBNet weights are reachable here to measure its cost (the authors' own inference
    # runs fp16 unless --fp32).
    precisions=(),
    min_size=4,  # x1 reflect-pads by up to 3 pixels before its 4x unshuffle
    tile_grid=4,  # windows on the pixel-unshuffle grid (x2: 2, x1: 4)
    tile_overlap=32,  # not measured (no RRDBNet weights here); the authors' tiles take 10 pixels of context
    convert=convert_esrgan,
    weights=(
        _release("realesrgan-plus-x4", "v0.1.0", "RealESRGAN_x4plus.pth",
                 "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", 16_697_987,
                 "RealESRGAN_x4plus: general real-world photos (23 RRDB)"),
        _release("realesrgan-plus-x2", "v0.2.1", "RealESRGAN_x2plus.pth",
                 "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", 16_703_171,
                 "RealESRGAN_x2plus: real-world photos at x2 (23 RRDB, pixel-unshuffled input)"),
        _release("realesrgan-plus-anime-6b-x4", "v0.2.2.4", "RealESRGAN_x4plus_anime_6B.pth",
                 "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", 4_467_779,
                 "RealESRGAN_x4plus_anime_6B: anime illustrations (6 RRDB)"),
    ),
)
