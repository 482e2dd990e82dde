"""sensor_msgs/Image <-> numpy without cv_bridge (ROS-free: works on any object with Image's fields).

Supported encodings: rgb8, bgr8, mono8, rgba8, bgra8, mono16 (scaled to 8 bit),
yuv422 / uyvy and yuv422_yuy2 / yuyv (even widths only). Row padding (``step`` >
width * bytes per pixel) is handled; a buffer shorter than ``step * height``, a
``step`` too small for the width or an odd-width 4:2:2 image is rejected with
:class:`ImageConversionError` (:func:`check_image` runs the same checks without
touching the pixels).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

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


class ImageConversionError(ValueError):
    """The image cannot be converted (unknown encoding, inconsistent sizes)."""


# Packed 4:2:2 formats carry one U and one V sample per pair of pixels.
_PIXEL_PAIRS = ("uyvy", "yuv422", "yuyv", "yuv422_yuy2")


def check_image(msg: Any, max_side: int = 0) -> None:
    """Raise ImageConversionError unless ``msg`` can be converted; cheap (looks at no pixel).

    Checks the encoding, the size (and ``max_side`` when > 0), the even width of the
    packed 4:2:2 formats, ``step`` against the width and the data length against
    ``step * height``: what :func:`image_to_rgb` needs, so a frame that passes never
    fails later in OpenCV.
    """
    _layout(msg, max_side)


def _layout(msg: Any, max_side: int = 0) -> tuple[int, int, int, int, int]:
    """(channels, bytes per channel, height, width, step) of a valid image."""
    encoding = str(msg.encoding)
    if encoding not in _LAYOUTS:
        raise ImageConversionError(
            f"unsupported encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, depth = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels ({width}x{height})")
    if max_side > 0 and max(width, height) > max_side:
        raise ImageConversionError(f"image is {width}x{height}: larger than {max_side} pixels a side")
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


def image_array(msg: Any) -> np.ndarray:
    """The pixels as an (H, W, C) or (H, W) array in the message's own encoding (a view when possible)."""
    channels, depth, height, width, step = _layout(msg)
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


def image_to_rgb(msg: Any) -> np.ndarray:
    """Any supported Image -> uint8 (H, W, 3) RGB (contiguous)."""
    pixels = image_array(msg)
    encoding = str(msg.encoding)
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
