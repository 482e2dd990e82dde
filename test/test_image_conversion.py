"""sensor_msgs/Image <-> numpy for the supported encodings, padding and bad messages."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from picosam3_ros.core.image_conversion import ImageConversionError, check_image, fill_image, image_to_rgb

RGB = np.random.default_rng(3).integers(0, 255, (7, 5, 3), dtype=np.uint8)


def message(pixels, encoding, pad=0, bigendian=0):
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8) if pixels.dtype == np.uint8 else None
    if rows is None:
        rows = pixels.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(pixels.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 99, np.uint8)], axis=1)
    return SimpleNamespace(
        encoding=encoding,
        height=pixels.shape[0],
        width=pixels.shape[1],
        step=padded.shape[1],
        is_bigendian=bigendian,
        data=padded.tobytes(),
    )


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings(pad):
    np.testing.assert_array_equal(image_to_rgb(message(RGB, "rgb8", pad)), RGB)
    np.testing.assert_array_equal(image_to_rgb(message(RGB[..., ::-1].copy(), "bgr8", pad)), RGB)
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])
    np.testing.assert_array_equal(image_to_rgb(message(rgba, "rgba8", pad)), RGB)
    np.testing.assert_array_equal(image_to_rgb(message(rgba[..., [2, 1, 0, 3]].copy(), "bgra8", pad)), RGB)


def test_mono_encodings():
    grey = RGB[..., 0]
    out = image_to_rgb(message(grey, "mono8", pad=1))
    assert out.shape == (7, 5, 3) and (out[..., 0] == grey).all() and (out[..., 2] == grey).all()
    wide = grey.astype(np.uint16) << 8
    for bigendian in (0, 1):
        np.testing.assert_array_equal(
            image_to_rgb(message(wide, "mono16", bigendian=bigendian))[..., 1], grey
        )


def test_yuv422_packings_agree():
    rng = np.random.default_rng(4)
    luma = rng.integers(16, 235, (4, 6), dtype=np.uint8)
    chroma = rng.integers(16, 240, (4, 6), dtype=np.uint8)
    yuyv = np.dstack([luma, chroma])  # Y0 U0 Y1 V0 ...
    uyvy = np.dstack([chroma, luma])  # U0 Y0 V0 Y1 ...
    a = image_to_rgb(message(yuyv, "yuv422_yuy2"))
    b = image_to_rgb(message(uyvy, "yuv422"))
    np.testing.assert_array_equal(a, b)
    grey = image_to_rgb(message(np.dstack([np.full((2, 4), 128, np.uint8)] * 2), "yuyv"))
    assert np.ptp(grey.astype(int), axis=2).max() <= 2


@pytest.mark.parametrize(
    "change, text",
    [
        ({"encoding": "jpeg"}, "unsupported encoding"),
        ({"step": 4}, "smaller than"),
        ({"data": b"\x00" * 10}, "expected step * height"),
        ({"width": 0}, "no pixels"),
    ],
)
def test_bad_messages(change, text):
    msg = message(RGB, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=text.replace("*", r"\*")):
        image_to_rgb(msg)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
def test_odd_width_422_is_rejected_at_conversion(encoding):
    # 4:2:2 packs a U and a V sample per pixel pair: OpenCV fails on odd widths, so the check comes first.
    odd = message(np.full((4, 5, 2), 128, np.uint8), encoding)
    with pytest.raises(ImageConversionError, match="even width"):
        check_image(odd)
    with pytest.raises(ImageConversionError, match="even width"):
        image_to_rgb(odd)
    check_image(message(np.full((4, 6, 2), 128, np.uint8), encoding))


def test_check_image_rejects_header_only_and_oversized_frames():
    header_only = SimpleNamespace(encoding="rgb8", height=60000, width=60000, step=180000, data=b"",
                                  is_bigendian=0)
    with pytest.raises(ImageConversionError, match="expected step"):
        check_image(header_only)
    with pytest.raises(ImageConversionError, match="larger than 8192"):
        check_image(header_only, max_side=8192)
    check_image(message(RGB, "rgb8", pad=3), max_side=8192)


def test_fill_image_round_trip():
    msg = fill_image(SimpleNamespace(), RGB, "rgb8")
    assert (msg.width, msg.height, msg.step, msg.encoding) == (5, 7, 15, "rgb8")
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)
    with pytest.raises(ImageConversionError):
        fill_image(SimpleNamespace(), RGB, "mono8")
