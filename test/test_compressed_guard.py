"""The compressed-payload guard (core/compressed_guard.py) and compressed_to_rgb on top of it.

Every payload is generated here: the decompression bombs (a 785-byte JPEG whose frame header
claims 32000x32000, a 389 KB PNG of 20000x20000), the other formats OpenCV would decode,
truncations at every length and seeded mutations of valid files. None is ever decoded
unless the guard passed it.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import zlib
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
from payloads import encode, jpeg_bomb, picture, png_bomb

from picosam3_ros.core.compressed_guard import (
    MAX_SCANS,
    PayloadRefused,
    check_payload,
    declared_format,
    decoder_output,
)
from picosam3_ros.core.image_conversion import (
    ImageConversionError,
    check_image,
    compressed_to_rgb,
    fill_image,
    image_to_rgb,
)


def message(data: bytes, fmt: str) -> NS:
    return NS(data=data, format=fmt)


def test_bombs_are_refused_from_their_headers():
    jpeg, png = jpeg_bomb(), png_bomb()
    assert len(jpeg) == 785 and 380_000 < len(png) < 400_000
    with pytest.raises(PayloadRefused, match="32000x32000"):
        check_payload(jpeg, "jpeg")
    with pytest.raises(PayloadRefused, match="20000x20000"):
        check_payload(png, "png")
    for data, fmt in ((jpeg, "jpeg"), (png, "png")):
        with pytest.raises(ImageConversionError, match="max_image_pixels"):
            compressed_to_rgb(message(data, fmt))
    # The limit is the caller's: a higher one lets the header through (it is a valid one).
    assert check_payload(jpeg, "jpeg", max_pixels=32000 * 32000).pixels == 32000 * 32000


def test_valid_payloads_give_their_size_and_decode_as_opencv_does():
    rgb = picture(40, 30)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cases = [
        (".jpg", rgb, [], "jpeg"),
        (".jpg", rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "rgb8; jpeg compressed bgr8"),
        (".jpg", grey, [], "mono8; jpeg compressed mono8"),
        (".png", rgb, [], "png"),
        (".png", grey, [], "bgr8; png compressed bgr8"),
        (".png", (rgb.astype(np.uint16) * 257), [], "png"),  # 16-bit
        (".png", rgb, [], ""),  # an empty format: taken from the bytes
    ]
    for ext, image, params, fmt in cases:
        data = encode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image, params)
        header = check_payload(data, fmt)
        assert (header.format, header.width, header.height) == (ext[1:].replace("jpg", "jpeg"), 40, 30)
        got = compressed_to_rgb(message(data, fmt))
        want = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(got, want, err_msg=f"{ext} {fmt}")
    # rclpy hands the data over as array.array('B'); numpy arrays work too.
    import array

    data = encode(".jpg", rgb)
    assert check_payload(array.array("B", data), "jpeg").width == 40
    assert check_payload(np.frombuffer(data, np.uint8), "jpeg").height == 30


def test_other_formats_and_mismatched_labels_are_refused():
    image = picture(64, 64)
    for ext, name in ((".tiff", "TIFF"), (".webp", "WebP"), (".bmp", "BMP"), (".ppm", "PNM"),
                      (".gif", "GIF"), (".avif", "AVIF"), (".hdr", "HDR"), (".ras", "Sun raster")):
        data = encode(ext, image)
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV would
        with pytest.raises(PayloadRefused, match=name):
            check_payload(data, "jpeg")
        with pytest.raises(ImageConversionError, match="only jpeg and png"):
            compressed_to_rgb(message(data, "jpeg"))
    # JPEG 2000's two signatures (OpenCV's encoder needs options this test does not care about).
    for magic in (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51\x00\x2f"):
        with pytest.raises(PayloadRefused, match="JPEG 2000"):
            check_payload(magic + bytes(64), "jpeg")
    jpeg, png = encode(".jpg", image), encode(".png", image)
    with pytest.raises(PayloadRefused, match="says png but the data is jpeg"):
        check_payload(jpeg, "png")
    with pytest.raises(PayloadRefused, match="says jpeg but the data is png"):
        check_payload(png, "rgb8; jpeg compressed bgr8")
    for fmt in ("tiff", "webp", "16UC1; compressedDepth png", "jpeg png"):
        with pytest.raises(PayloadRefused):
            check_payload(jpeg, fmt)
    assert declared_format("JPEG") == declared_format("jpg") == "jpeg"
    assert declared_format("") is None
    with pytest.raises(PayloadRefused, match="no data"):
        check_payload(b"", "jpeg")


def test_hostile_jpeg_segments_are_refused_without_reading_past_the_buffer():
    good = encode(".jpg", picture())
    sof = good.index(b"\xff\xc0")
    app = good.index(b"\xff\xe0") if b"\xff\xe0" in good else 2
    cases = {
        "length 0": good[:app + 2] + b"\x00\x00" + good[app + 4:],
        "length 1": good[:app + 2] + b"\x00\x01" + good[app + 4:],
        "length past the end": good[:app + 2] + b"\xff\xff" + good[app + 4:],
        "SOF length vs components": good[:sof + 2] + b"\x00\x0c" + good[sof + 4:],
        "SOF with no components": good[:sof + 9] + b"\x00" + good[sof + 10:],
        "height 0 (DNL)": good[:sof + 5] + b"\x00\x00" + good[sof + 7:],
        "two SOI": good[:2] + good,
        "no SOF": b"\xff\xd8\xff\xfe\x00\x04ab\xff\xd9",
        "a scan first": b"\xff\xd8\xff\xda\x00\x08" + bytes(6) + b"\xff\xd9",
        "SOI only": b"\xff\xd8\xff",
    }
    sof_end = sof + 2 + int.from_bytes(good[sof + 2: sof + 4], "big")
    cases["two SOF"] = good[:sof_end] + good[sof:sof_end] + good[sof_end:]
    for what, data in cases.items():
        with pytest.raises(PayloadRefused):
            check_payload(data, "jpeg")
            pytest.fail(what)
    # Too many scans: the decoding time of a progressive file grows with them.
    sos = good.index(b"\xff\xda")
    scan = good[sos:-2]
    with pytest.raises(PayloadRefused, match=f"more than {MAX_SCANS} scans"):
        check_payload(good[:sos] + scan * (MAX_SCANS + 1) + b"\xff\xd9", "jpeg")
    # Fill bytes, restart markers and stuffed bytes are no markers; a long run of 0xFF is linear work.
    assert check_payload(good[:2] + b"\xff" * 10_000 + good[2:], "jpeg").width == 40
    assert check_payload(good[:-2] + b"\xff\x00" * 100_000 + b"\xff\xd9", "jpeg").width == 40


def test_hostile_png_headers_are_refused():
    good = encode(".png", picture())
    ihdr = good[8:33]
    body = bytearray(ihdr[8:21])

    def with_ihdr(new_body: bytes, length: int = 13, kind: bytes = b"IHDR") -> bytes:
        chunk = struct.pack(">I", length) + kind + new_body + struct.pack(">I", zlib.crc32(kind + new_body))
        return good[:8] + chunk + good[33:]

    bad_depth = bytes(body[:8]) + b"\x03\x02" + bytes(body[10:])  # 3-bit RGB
    huge = struct.pack(">II", 2**31, 1) + bytes(body[8:])
    cases = {
        "CRC": good[:30] + bytes([good[30] ^ 1]) + good[31:],
        "not IHDR first": with_ihdr(bytes(body), kind=b"IDAT"),
        "IHDR length": with_ihdr(bytes(body), length=14),
        "bit depth": with_ihdr(bad_depth),
        "size out of range": with_ihdr(huge),
        "zero width": with_ihdr(struct.pack(">II", 0, 30) + bytes(body[8:])),
        "truncated": good[:20],
    }
    for what, data in cases.items():
        with pytest.raises(PayloadRefused):
            check_payload(data, "png")
            pytest.fail(what)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncations_and_mutations_never_escape_the_guard(ext):
    """Every prefix, and 1,500 seeded mutations: the guard refuses or returns a header, and
    compressed_to_rgb refuses or returns exactly the size the header announced."""
    fmt = ext[1:].replace("jpg", "jpeg")
    good = encode(ext, cv2.cvtColor(picture(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
                  if ext == ".jpg" else [])
    rng = random.Random(21)
    payloads = [good[:n] for n in range(len(good))]
    for _ in range(1500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            kind = rng.randrange(4)
            if kind == 0:
                data[at] = rng.randrange(256)
            elif kind == 1:
                data[at:at + 2] = rng.choice([b"\x00\x00", b"\x00\x01", b"\xff\xff", b"\xff\xc0",
                                              b"\xff\xda"])
            elif kind == 2:
                del data[at:at + rng.randint(1, 16)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 16))
        payloads.append(bytes(data))
    decoded = 0
    for data in payloads:
        try:
            header = check_payload(data, fmt)
        except PayloadRefused:
            continue
        decoded += 1
        try:
            rgb = compressed_to_rgb(message(data, fmt))
        except ImageConversionError:
            continue
        assert rgb.shape == (header.height, header.width, 3)
    assert decoded > 50  # the mutations did not all fail at the header: the decoder was exercised


def test_decoder_messages_are_captured_and_other_stderr_passes(capfd):
    jpeg = bytearray(encode(".jpg", picture(320, 240)))
    jpeg[len(jpeg) // 2: len(jpeg) // 2 + 30] = b"\xff\xd0" * 15  # damaged entropy data: decodes, complains
    warnings: list[str] = []
    assert compressed_to_rgb(message(bytes(jpeg), "jpeg"), warnings=warnings).shape == (240, 320, 3)
    assert any(w.startswith("Corrupt JPEG data") for w in warnings), warnings
    png = encode(".png", picture(320, 240))
    with pytest.raises(ImageConversionError, match="libpng error"):  # the decoder's reason, in the refusal
        compressed_to_rgb(message(png[: len(png) // 2], "png"))
    with decoder_output() as lines:
        os.write(2, b"someone else's line\n")
        print("a python line", file=sys.stderr)
    assert lines == []
    err = capfd.readouterr().err
    assert "someone else's line" in err and "a python line" in err
    assert "Corrupt JPEG" not in err and "libpng" not in err


def test_raw_images_over_the_pixel_limit_are_bad_images():
    msg = NS(header=NS(frame_id="camera"), is_bigendian=0)
    fill_image(msg, np.zeros((100, 200), np.uint8), "mono8")
    assert image_to_rgb(msg, max_pixels=20_000).shape == (100, 200, 3)
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        image_to_rgb(msg, max_pixels=19_999)
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        check_image(msg, max_pixels=19_999)
