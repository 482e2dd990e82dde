"""The emulated IMX500's ISP input tensor and output tensor encoding (numpy only, no picamera2).

Input (Sony modlib ``modlib/devices/imx500/isp.py`` documents the sensor ISP; picamera2's
``IMX500.input_tensor_image`` undoes it): the ROI is stretched to the input tensor without
letterbox (done by the caller), put in the network's channel order, padded with zeros to a
width that is a multiple of 32 and an even height, laid out planar (C, H, W), and each
channel normalised in fixed point from the network's registers::

    q = ((((p * div_val) >> div_shift) + norm_val) >> norm_shift)

saturated to int8 or uint8 (modlib's reference casts, which only differs where a register
set overflows the 8-bit range).

Output (raspberrypi/libcamera ``src/ipa/rpi/cam_helper/imx500_tensor_parser/
imx500_tensor_parser.cpp``): every output element is dequantised ``(q - shift) * scale``
with the tensor's ``bitsPerElement``/``shift``/``scale``/``format`` from the network's
parameters (``dnnParams.xml`` in ``packerOut.zip``), and the floats are laid out with
the first listed dimension varying fastest (picamera2 reshapes them with ``order='F'``
to the listed sizes).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picosam3_ros.core.rpk import IDENTITY_NORMALISATION, IspNormalisation


def padded_size(width: int, height: int) -> tuple[int, int]:
    """The ISP's tensor size: width padded to a multiple of 32, height to an even number."""
    return (width + 31) // 32 * 32, (height + 1) // 2 * 2


def isp_input_tensor(
    crop_rgb: np.ndarray, norm: IspNormalisation = IDENTITY_NORMALISATION, fmt: str = "RGB"
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB crop already stretched to the input size -> the (3, Hp, Wp) tensor."""
    height, width = crop_rgb.shape[:2]
    pixels = crop_rgb if fmt == "RGB" else crop_rgb[..., ::-1]
    pad_w, pad_h = padded_size(width, height)
    planar = np.zeros((3, pad_h, pad_w), np.int64)
    planar[:, :height, :width] = np.moveaxis(pixels, -1, 0)
    for c in range(3):
        scaled = (planar[c] * norm.div_val[c]) >> norm.div_shift
        planar[c] = (scaled + norm.norm_val[c]) >> norm.norm_shift[c]
    if norm.signed:
        return np.clip(planar, -128, 127).astype(np.int8)
    return np.clip(planar, 0, 255).astype(np.uint8)


def input_tensor_to_rgb(
    tensor: np.ndarray,
    size: tuple[int, int],
    norm: IspNormalisation = IDENTITY_NORMALISATION,
    fmt: str = "RGB",
) -> np.ndarray:
    """The (3, Hp, Wp) tensor -> the (H, W, 3) uint8 RGB pixels it encodes (exact for raw-pixel networks)."""
    width, height = size
    q = tensor[:, :height, :width].astype(np.int64)
    out = np.empty_like(q)
    for c in range(3):
        out[c] = (((q[c] << norm.norm_shift[c]) - norm.norm_val[c]) << norm.div_shift) // norm.div_val[c]
    rgb = np.moveaxis(np.clip(out, 0, 255).astype(np.uint8), 0, -1)
    return rgb if fmt == "RGB" else np.ascontiguousarray(rgb[..., ::-1])


@dataclass(frozen=True)
class OutputQuantization:
    """One output tensor's encoding on the sensor: ``bits`` per element, (q - shift) * scale."""

    bits: int = 8
    shift: int = 0
    scale: float = 0.125
    signed: bool = True

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Float network output -> the float the sensor delivers (quantised, then dequantised)."""
        if self.signed:
            low, high = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        else:
            low, high = 0, (1 << self.bits) - 1
        q = np.clip(np.rint(values / self.scale) + self.shift, low, high)
        return ((q - self.shift) * self.scale).astype(np.float32)


def output_quantization(packer_out: Path) -> OutputQuantization | None:
    """The first output tensor's encoding from ``dnnParams.xml`` in ``packerOut.zip`` (None if absent)."""
    try:
        with zipfile.ZipFile(packer_out) as archive:
            root = ET.fromstring(archive.read("dnnParams.xml"))
    except (OSError, KeyError, zipfile.BadZipFile, ET.ParseError):
        return None
    tensor = root.find(".//outputTensors/outputTensor")
    if tensor is None:
        return None
    return OutputQuantization(
        int(tensor.get("bitsPerElement", "8")),
        int(tensor.get("shift", "0")),
        float(tensor.get("scale", "1.0")),
        tensor.get("format", "signed") == "signed",
    )


def flatten_output(output_chw: np.ndarray, transposed: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A (C, H, W) output -> (flat float32, sizes listed fastest first) as libcamera delivers them.

    ``transposed`` True: the width varies fastest (row-major), sizes (C, W, H): picamera2's
    Fortran-order reshape then gives a (C, W, H) array, i.e. each map transposed (the node's
    ``imx500_output_transpose: true``). False: the height varies fastest, sizes (C, H, W):
    the reshape gives the maps as they are. The channel is listed first, as in the
    ``dnnParams.xml`` of the project's network (size 1, ordinal 0).
    """
    channels, height, width = output_chw.shape
    if transposed:  # flat index c + C * (w + W * h)
        return output_chw.transpose(0, 2, 1).ravel(order="F").astype(np.float32), (channels, width, height)
    # flat index c + C * (h + H * w)
    return output_chw.ravel(order="F").astype(np.float32), (channels, height, width)
