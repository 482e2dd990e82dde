"""Hostile compressed-image payloads, generated (never committed): the decompression bombs of
issue 21 and a seeded mix of malformed payloads. Shared by the guard, node, bag and bench tests.
"""

from __future__ import annotations

import random
import struct
import zlib

import cv2
import numpy as np


def picture(width: int = 40, height: int = 30) -> np.ndarray:
    """A smooth RGB test picture (not symmetric)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)


def encode(ext: str, image: np.ndarray, params=()) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


def jpeg_bomb(size: int = 785, side: int = 32000) -> bytes:
    """A valid 8x8 JPEG whose frame header says side x side, padded with a comment to ``size`` bytes."""
    data = bytearray(encode(".jpg", picture(8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", side, side)
    pad = size - len(data) - 4
    assert pad >= 0
    return bytes(data[:2] + b"\xff\xfe" + struct.pack(">H", pad + 2) + bytes(pad) + data[2:])


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = 20000) -> bytes:
    """A grey side x side PNG of zeros: 400 MB of pixels in about 389 KB (streamed, never held)."""
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def hostile_payloads(count: int, seed: int = 21) -> list[tuple[str, bytes, str]]:
    """``count`` (format field, payload, what) tuples: other formats labelled jpeg, mislabelled,
    truncated, mutated and hostile-length files, small bombs, empty and random bytes."""
    rng = random.Random(seed)
    image = picture(64, 48)
    jpeg, png = encode(".jpg", image), encode(".png", image)
    others = [encode(ext, image) for ext in (".tiff", ".webp", ".bmp", ".ppm", ".gif", ".avif")]
    small_bombs = [jpeg_bomb(side=5000), png_bomb(5000)]
    out = []
    for _ in range(count):
        kind = rng.randrange(9)
        if kind == 0:
            out.append(("jpeg", rng.choice(others), "another format labelled jpeg"))
        elif kind == 1:
            out.append(("jpeg", png, "png labelled jpeg"))
        elif kind == 2:
            data = rng.choice([jpeg, png])
            out.append(("jpeg" if data is jpeg else "png", data[: rng.randrange(len(data))], "truncated"))
        elif kind == 3:
            data = bytearray(rng.choice([jpeg, png]))
            fmt = "jpeg" if data[:2] == b"\xff\xd8" else "png"
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(data))
                data[at:at + 2] = rng.choice([rng.randbytes(2), b"\x00\x00", b"\xff\xff", b"\xff\xda"])
            out.append((fmt, bytes(data), "mutated"))
        elif kind == 4:
            out.append(rng.choice([("jpeg", small_bombs[0], "5000x5000 jpeg bomb"),
                                   ("png", small_bombs[1], "5000x5000 png bomb")]))
        elif kind == 5:
            out.append((rng.choice(["16UC1; compressedDepth png", "tiff", "jpeg png"]), png, "bad format"))
        elif kind == 6:
            out.append(("jpeg", b"", "empty"))
        elif kind == 7:
            out.append((rng.choice(["jpeg", "png", ""]), rng.randbytes(rng.randrange(1, 300)), "random"))
        else:  # a segment length that points past the end
            app = jpeg.index(b"\xff\xe0") if b"\xff\xe0" in jpeg else 2
            out.append(("jpeg", jpeg[:app + 2] + b"\xff\xff" + jpeg[app + 4:], "length past the end"))
    return out
