"""sensor_msgs/Image <-> numpy without cv_bridge (ROS-free: works on any object with Image's fields).

Supported encodings: rgb8, bgr8, mono8, rgba8, bgra8, mono16 (scaled to 8 bit),
yuv422 / uyvy and yuv422_yuy2 / yuyv (even widths only); ``sensor_msgs/CompressedImage`` jpeg
and png (:func:`compressed_to_rgb`, as image_transport's compressed plugin writes them). Row
padding (``step`` > width * bytes per pixel) is handled; a buffer shorter than ``step * height``,
a ``step`` too small for the width or an odd-width 4:2:2 image is rejected with
:class:`ImageConversionError` (:func:`check_image` runs the same checks without touching the pixels).
Depth images (16UC1 / mono16 millimetres, 32FC1 metres) are read by :func:`depth_array`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from picosam3_ros.core.compressed_guard import (
    DEFAULT_MAX_PIXELS,
    PayloadRefused,
    check_payload,
    decoder_output,
)

# encoding -> (channels, bytes per channel)
_LAYOUTS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "8UC3": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono16": (1, 2),
    "16UC1": (1, 2),
    "uyvy": (2, 1),
    "yuv422": (2, 1),
    "yuyv": (2, 1),
    "yuv422_yuy2": (2, 1),
}

SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUTS))

# Depth images (REP 118): encoding -> (layout, metres per unit). mono16 is what some drivers
# call the same millimetre pixels.
_DEPTH_LAYOUTS: dict[str, tuple[int, int]] = {"16UC1": (1, 2), "mono16": (1, 2), "32FC1": (1, 4)}
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


class ImageConversionError(ValueError):
    """The image cannot be converted (unknown encoding, inconsistent sizes)."""


# Packed 4:2:2 formats carry one U and one V sample per pair of pixels.
_PIXEL_PAIRS = ("uyvy", "yuv422", "yuyv", "yuv422_yuy2")


def check_image(msg: Any, max_side: int = 0, max_pixels: int = 0) -> None:
    """Raise ImageConversionError unless ``msg`` can be converted; cheap (looks at no pixel).

    Checks the encoding, the size (and ``max_side``, ``max_pixels`` when > 0), the even width of the
    packed 4:2:2 formats, ``step`` against the width and the data length against
    ``step * height``: what :func:`image_to_rgb` needs, so a frame that passes never
    fails later in OpenCV.
    """
    _layout(msg, max_side, max_pixels)


def _layout(
    msg: Any, max_side: int = 0, max_pixels: int = 0, layouts: dict[str, tuple[int, int]] = _LAYOUTS
) -> tuple[int, int, int, int, int]:
    """(channels, bytes per channel, height, width, step) of a valid image."""
    encoding = str(msg.encoding)
    if encoding not in layouts:
        raise ImageConversionError(
            f"unsupported encoding '{encoding}' (supported: {', '.join(sorted(layouts))})"
        )
    channels, depth = layouts[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels ({width}x{height})")
    if max_side > 0 and max(width, height) > max_side:
        raise ImageConversionError(f"image is {width}x{height}: larger than {max_side} pixels a side")
    if max_pixels > 0 and width * height > max_pixels:
        raise ImageConversionError(f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                                   f"{max_pixels / 1e6:.1f} MP limit (max_image_pixels)")
    if encoding in _PIXEL_PAIRS and width % 2:
        raise ImageConversionError(f"{encoding} needs an even width (pixel pairs), got {width}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than width * pixel size = {row_bytes}")
    size = len(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.nbytes
    if size < step * height:
        raise ImageConversionError(
            f"data has {size} bytes, expected step * height = {step} * {height} = {step * height}"
        )
    return channels, depth, height, width, step


def image_array(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """The pixels as an (H, W, C) or (H, W) array in the message's own encoding (a view when possible)."""
    channels, depth, height, width, step = _layout(msg, 0, max_pixels)
    row_bytes = width * channels * depth
    data = msg.data
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        return pixels.astype(np.uint16)
    if channels == 1:
        return rows
    return rows.reshape(height, width, channels)


def depth_array(msg: Any, max_pixels: int = 0) -> tuple[np.ndarray, float]:
    """A depth Image -> its (H, W) pixels (uint16 or float32, own units) and metres per unit.

    REP 118: ``16UC1`` (and ``mono16``) in millimetres, ``32FC1`` in metres; 0 (and NaN) mean
    no data. Raises ImageConversionError for other encodings and inconsistent sizes.
    """
    _, size, height, width, step = _layout(msg, 0, max_pixels, _DEPTH_LAYOUTS)
    data = msg.data
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    rows = np.ascontiguousarray(buffer[: step * height].reshape(height, step)[:, : width * size])
    kind = "f4" if size == 4 else "u2"
    pixels = rows.view(np.dtype((">" if msg.is_bigendian else "<") + kind)).reshape(height, width)
    return pixels, DEPTH_SCALES[str(msg.encoding)]


def image_to_rgb(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """Any supported Image -> uint8 (H, W, 3) RGB (contiguous); over ``max_pixels`` (> 0) refused."""
    pixels = image_array(msg, max_pixels)
    try:
        return _to_rgb(pixels, str(msg.encoding))
    except cv2.error as exc:  # OpenCV's own limits (2^30 pixels): a bad image, not a backend error
        raise ImageConversionError(f"OpenCV cannot convert the image: {str(exc).strip()[-200:]}") from None


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("rgb8", "8UC3"):
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    if encoding in ("mono16", "16UC1"):
        return cv2.cvtColor((pixels >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    if encoding in ("uyvy", "yuv422"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_UYVY)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_YUYV)


def rgb_to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the rows of an Image in ``encoding``: uint8 (H, W * bytes per pixel).

    The inverse of :func:`image_to_rgb` (up to mono and chroma subsampling); the bag tools use it
    to write test and evaluation frames in every encoding the node reads. yuv422 needs an even width.
    """
    if encoding not in _LAYOUTS:
        raise ImageConversionError(f"unsupported encoding '{encoding}'")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    if encoding in ("rgb8", "8UC3"):
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding in ("rgba8", "bgra8"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA if encoding == "rgba8" else cv2.COLOR_RGB2BGRA)
    elif encoding in ("mono8", "8UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding in ("mono16", "16UC1"):
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype("<u2") * 257
        pixels = grey.view(np.uint8).reshape(height, width * 2)
    else:
        if width % 2:
            raise ImageConversionError(f"{encoding} needs an even width, got {width}")
        # BT.601 video range, what OpenCV's YUV2RGB_UYVY/YUYV decoding (image_to_rgb) expects.
        yuv = rgb.astype(np.float32) @ np.array(
            [[0.257, -0.148, 0.439], [0.504, -0.291, -0.368], [0.098, 0.439, -0.071]], np.float32
        ) + np.array([16.0, 128.0, 128.0], np.float32)
        y = yuv[..., 0]
        u = ((yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) / 2).repeat(2, axis=1)
        v = ((yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) / 2).repeat(2, axis=1)
        chroma = np.where(np.arange(width) % 2 == 0, u, v)  # U on even pixels, V on odd ones
        pairs = (chroma, y) if encoding in ("uyvy", "yuv422") else (y, chroma)
        pixels = np.clip(np.rint(np.stack(pairs, axis=-1)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels).reshape(height, -1)


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                      warnings: list[str] | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png) -> uint8 (H, W, 3) RGB.

    ``format`` is image_transport's: "jpeg", "png", or e.g. "rgb8; jpeg compressed bgr8".
    :func:`~picosam3_ros.core.compressed_guard.check_payload` reads the header first: another
    format, a mismatch with ``format`` or a size over ``max_pixels`` is refused before any
    decoding (ImageConversionError). What the decoder prints (a damaged file) is appended to
    ``warnings`` instead of going to stderr; a payload it cannot decode is refused with it.
    """
    data = msg.data
    try:
        header = check_payload(data, str(msg.format), max_pixels)
    except PayloadRefused as exc:
        raise ImageConversionError(str(exc)) from None
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    with decoder_output() as printed:
        try:
            decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        except cv2.error as exc:
            decoded, printed_error = None, str(exc).strip().splitlines()[-1:]
        else:
            printed_error = []
    said = (printed + printed_error)[:3]
    if decoded is None or decoded.shape[:2] != (header.height, header.width):
        detail = f": {'; '.join(said)[:300]}" if said else ""
        raise ImageConversionError(f"cannot decode the {header.format} image ({buffer.size} bytes, "
                                   f"{header.width}x{header.height}), damaged{detail}")
    if warnings is not None:
        warnings.extend(said)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)  # in place: no second copy


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """RGB uint8 -> jpeg or png bytes, the payload of a CompressedImage (format = ``fmt``)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageConversionError(f"cannot encode as {fmt}")
    return encoded.tobytes()


def fill_image(msg: Any, array: np.ndarray, encoding: str) -> Any:
    """Fill an Image message (header untouched) from an (H, W) or (H, W, C) uint8 array."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ImageConversionError(f"expected uint8 pixels, got {array.dtype}")
    channels = 1 if array.ndim == 2 else array.shape[2]
    expected = _LAYOUTS.get(encoding)
    if expected is None or expected[0] != channels or expected[1] != 1:
        raise ImageConversionError(f"cannot write a {channels}-channel array as '{encoding}'")
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1] * channels)
    msg.data = array.tobytes()
    return msg
