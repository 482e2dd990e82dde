"""Check a compressed image payload before anything decodes it (ROS-free).

:func:`check_payload` is the one guard in front of every decoder of camera payloads (the
sensor node's ``image/compressed`` input, the teleop page, bag_eval): from the bytes and
the declared ``format`` it returns the format and the size the decoder would allocate, or
refuses with a reason (:class:`PayloadRefused`). It reads the header only:

* the magic bytes: JPEG (``FF D8 FF``) or PNG (the 8-byte signature); nothing else
  (TIFF, WebP, BMP, PPM, JPEG 2000, GIF, AVIF, ... which OpenCV would decode too), and the
  bytes must be what ``format`` names (image_transport's "jpeg", "png", "rgb8; jpeg
  compressed bgr8"; an empty format is taken from the bytes);
* PNG: the IHDR chunk (first, 13 bytes, CRC checked): width, height, bit depth, colour type;
* JPEG: the marker segments up to the frame header (SOF0-SOF15), each length checked
  against the buffer, then the scans (SOS) are counted to the end: a progressive file's
  decoding time grows with its scans, so more than :data:`MAX_SCANS` are refused.

A size over ``max_pixels`` is refused: a 785-byte JPEG can claim 32000x32000 (3 GB to
decode) and a 389 KB PNG 20000x20000. The work is linear in the payload (regular
expressions without backtracking), and nothing is read past the buffer, whatever the
segment lengths say.

:func:`decoder_output` captures what libjpeg/libpng print on stderr while decoding (one
line per damaged message otherwise, outside any log throttle): the caller gets the lines,
everything else written to stderr meanwhile is passed through.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

DEFAULT_MAX_PIXELS = 4096 * 4096  # 16.8 MP: above the IMX500's full sensor (4056x3040, 12.3 MP)
MAX_SCANS = 100  # libjpeg's progressive scripts use 10 (colour); each scan is a pass over the image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
# PNG colour type -> allowed bit depths (PNG spec, table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Other formats OpenCV reads, to name them in the refusal.
_OTHER_MAGIC = (
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"GIF8", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"#?RADIANCE", "HDR"), (b"\x59\xa6\x6a\x95", "Sun raster"),
)

# Between segments: anything up to a run of 0xFF bytes and the marker byte after it.
_NEXT_MARKER = re.compile(rb"[^\xff]*+\xff++(?=[^\x00\xff])")
# After a scan header: entropy-coded data (bytes, stuffed 0xFF00, restart markers) up to the
# next real marker. Possessive quantifiers: linear time on any input.
_SCAN_END = re.compile(rb"(?:[^\xff]++|\xff++[\x00\xd0-\xd7])*+\xff++(?=[\x01-\xcf\xd8-\xfe])")
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


class PayloadRefused(ValueError):
    """The payload must not be decoded; the message says why."""


@dataclass(frozen=True)
class PayloadHeader:
    format: str  # "jpeg" | "png"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def declared_format(fmt: str) -> str | None:
    """"jpeg" or "png" from a CompressedImage ``format`` ("" -> None: taken from the bytes)."""
    text = str(fmt).lower()
    if "compresseddepth" in text:
        raise PayloadRefused(f"format '{fmt}' is a compressed depth image, not a camera frame")
    words = set(re.findall(r"[a-z0-9]+", text))
    named = {"jpeg" for w in words if w in ("jpeg", "jpg")} | ({"png"} & words)
    if len(named) == 1:
        return named.pop()
    if named:
        raise PayloadRefused(f"format '{fmt[:80]}' names both jpeg and png")
    if text.strip():
        raise PayloadRefused(f"format '{fmt[:80]}' is not jpeg or png (the only formats read)")
    return None


def _as_bytes(data: Any) -> bytes | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)  # array.array('B') from rclpy, numpy arrays, memoryviews: no copy
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def check_payload(data: Any, fmt: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> PayloadHeader:
    """The format and size of a jpeg/png payload, or :class:`PayloadRefused` (see the module doc)."""
    buf = _as_bytes(data)
    declared = declared_format(fmt)
    if len(buf) == 0:
        raise PayloadRefused("compressed image has no data")
    head = bytes(buf[:16])
    if head.startswith(PNG_SIGNATURE):
        actual = "png"
    elif head.startswith(JPEG_SOI):
        actual = "jpeg"
    else:
        other = next((name for magic, name in _OTHER_MAGIC if head.startswith(magic)), None)
        if other is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            other = "WebP"
        if other is None and head[4:8] == b"ftyp":
            other = "AVIF/HEIF"
        if other is None and head[:1] == b"P" and head[1:2] in b"1234567":
            other = "PNM"
        what = f"a {other} file" if other else f"not jpeg or png (starts {head[:8].hex(' ')})"
        raise PayloadRefused(f"compressed image is {what}; only jpeg and png are read")
    if declared is not None and declared != actual:
        raise PayloadRefused(f"format '{fmt[:80]}' says {declared} but the data is {actual}")
    width, height = _png_size(buf) if actual == "png" else _jpeg_size(buf)
    if width <= 0 or height <= 0:
        raise PayloadRefused(f"{actual} header gives no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadRefused(
            f"{actual} header claims {width}x{height} = {width * height / 1e6:.1f} MP, over the "
            f"{max_pixels / 1e6:.1f} MP limit (max_image_pixels)"
        )
    return PayloadHeader(actual, width, height)


def _png_size(buf) -> tuple[int, int]:
    ihdr = bytes(buf[8:33])
    if len(ihdr) < 25:
        raise PayloadRefused(f"png is truncated ({len(buf)} bytes, no complete IHDR chunk)")
    length = int.from_bytes(ihdr[0:4], "big")
    if ihdr[4:8] != b"IHDR" or length != 13:
        raise PayloadRefused("png does not start with a 13-byte IHDR chunk")
    if zlib.crc32(ihdr[4:21]) != int.from_bytes(ihdr[21:25], "big"):
        raise PayloadRefused("png IHDR chunk is damaged (CRC mismatch)")
    width, height = int.from_bytes(ihdr[8:12], "big"), int.from_bytes(ihdr[12:16], "big")
    depth, colour, compression, filtering, interlace = ihdr[16:21]
    if width >= 2**31 or height >= 2**31:
        raise PayloadRefused(f"png IHDR size {width}x{height} is out of range")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise PayloadRefused(f"png IHDR is invalid (bit depth {depth}, colour type {colour}, "
                             f"compression {compression}, filter {filtering}, interlace {interlace})")
    return width, height


def _jpeg_size(buf) -> tuple[int, int]:
    n = len(buf)
    pos = 2
    size: tuple[int, int] | None = None
    scans = 0
    while pos < n:
        found = _NEXT_MARKER.match(buf, pos)
        if found is None:
            break  # no further marker: truncated (the decoder pads the missing data)
        pos = found.end()
        marker = buf[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:  # EOI
            break
        if marker == 0xD8:
            raise PayloadRefused("jpeg has a second start-of-image marker")
        if pos + 2 > n:
            break
        length = (buf[pos] << 8) | buf[pos + 1]
        if length < 2:
            raise PayloadRefused(f"jpeg segment 0x{marker:02x} has length {length} (< 2)")
        end = pos + length
        if marker in _SOF_MARKERS:
            if size is not None:
                raise PayloadRefused("jpeg has two frame headers (SOF)")
            if end > n or length < 8:
                raise PayloadRefused("jpeg frame header (SOF) is truncated")
            height = (buf[pos + 3] << 8) | buf[pos + 4]
            width = (buf[pos + 5] << 8) | buf[pos + 6]
            components = buf[pos + 7]
            if length != 8 + 3 * components or components == 0:
                raise PayloadRefused(f"jpeg frame header (SOF) is inconsistent ({components} "
                                     f"components in {length} bytes)")
            if height == 0:
                raise PayloadRefused("jpeg frame header gives height 0 (DNL images are not read)")
            size = (width, height)
        elif marker == 0xDA:  # SOS: a scan header, then its entropy-coded data
            if size is None:
                raise PayloadRefused("jpeg scan before its frame header")
            scans += 1
            if scans > MAX_SCANS:
                raise PayloadRefused(f"jpeg has more than {MAX_SCANS} scans")
            if end > n:
                break
            data_end = _SCAN_END.match(buf, end)
            if data_end is None:
                break  # the scan runs to the end of the buffer: truncated
            pos = data_end.end() - 1  # the last 0xFF before the marker: where the next search starts
            continue
        pos = end
    if size is None:
        raise PayloadRefused(f"jpeg has no frame header (SOF) in its {n} bytes: truncated or damaged")
    return size


# --- decoder stderr ------------------------------------------------------------------------------
# What libjpeg(-turbo), libpng and OpenCV's image codecs print: passed to the caller, not to stderr.
_DECODER_LINE = re.compile(
    r"^(libpng (warning|error)|Corrupt JPEG data|Premature end of JPEG|Invalid SOS parameters|"
    r"Inconsistent progression|Warning: unknown JFIF|Unknown Adobe color|Application transferred|"
    r"Not a JPEG file|\[ ?(WARN|ERROR)[^\]]*\][^\n]*(grfmt|imgcodecs|loadsave))"
)
_capture_lock = threading.Lock()
_capture_file = None


@contextlib.contextmanager
def decoder_output() -> Iterator[list[str]]:
    """Capture fd 2 while the block runs; the yielded list gets the decoder's lines afterwards.

    The C libraries write to fd 2 directly, so the descriptor itself is pointed at a
    temporary file for the duration (a file, not a pipe: a writer can never block on it).
    Lines that are not the decoder's (another thread's log) are written to stderr after
    the block, in their order. One capture at a time in the process (a lock).
    """
    global _capture_file
    lines: list[str] = []
    with _capture_lock:
        try:
            if _capture_file is None:
                _capture_file = tempfile.TemporaryFile()  # noqa: SIM115 (kept for the process)
            saved = os.dup(2)
        except OSError:  # no stderr at all (a daemon): nothing to capture
            saved = -1
        if saved < 0:
            yield lines
            return
        capture = _capture_file
        capture.seek(0)
        capture.truncate()
        _flush_stderr()
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            passed = []
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if _DECODER_LINE.match(line):
                    lines.append(line.strip())
                else:
                    passed.append(line)
            if passed:
                _write_all(2, "".join(passed).encode())


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _flush_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
