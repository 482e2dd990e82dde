"""Build small files in the network.rpk format for tests (our own writer of the documented layout).

Layout (see ``picosam3_ros/core/rpk.py`` for the sources): firmware blocks
(``9464`` header with the big-endian size of header + body, flags, body, 64-byte footer
ending in ``3695``) followed by a newc CPIO archive with ``imx500_regs``,
``network_info.txt`` and optionally ``network_intrinsics``. The firmware bodies here are
filler bytes: no sensor runs them; the readers under test (ours, picamera2's, modlib's)
only walk the blocks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# ISP registers of a network that takes raw 8-bit pixels (q = p): the project's sensor network.
IDENTITY_REGISTERS = {"K00": 0x0400, "K02": 0x0000, "K03": 0x0000, "K11": 0x0400, "K13": 0x0000,
                      "K20": 0x0000, "K22": 0x0400, "K23": 0x0000}
# A normalising network (ImageNet mean/std, signed int8 tensor): exercises every register.
# q = (p / 255 - mean) / std * 32 per channel: gains 561/574/571 / 2**10, offsets -1084/-1042/-924 / 16.
NORMALISING_REGISTERS = {"K00": 0x0231, "K02": 0x0000, "K03": 0x1BC4, "K11": 0x023E, "K13": 0x1BEE,
                         "K20": 0x0000, "K22": 0x023B, "K23": 0x1C64}


def network_info_text(width: int = 96, height: int = 96, fmt: str = "RGB", registers: dict | None = None,
                      output_count: int | None = 1) -> str:
    regs = IDENTITY_REGISTERS if registers is None else registers
    lines = ["networkID=000001", "apParamSize=1024", "networkNum=1", "networkOrdinal=0",
             f"inputTensorWidth={width}", f"inputTensorHeight={height}", f"inputTensorFormat={fmt}"]
    lines += [f"inputTensorNorm_{name}=0x{value:04X}" for name, value in sorted(regs.items())]
    if output_count is not None:
        lines.append(f"outputTensorNum={output_count}")
    return "\n".join(lines) + "\n"


def _cpio_entry(name: str, body: bytes, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, 0o100644, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08X" % v for v in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += body
    out += b"\0" * (-len(out) % 4)
    return out


def cpio_archive(files: dict[str, bytes]) -> bytes:
    parts = [_cpio_entry(name, body, i + 1) for i, (name, body) in enumerate(files.items())]
    parts.append(_cpio_entry("TRAILER!!!", b"", 0))
    return b"".join(parts)


def firmware_block(body: bytes) -> bytes:
    header = b"9464" + struct.pack(">I", 32 + len(body)) + bytes(24)  # flags all 0: no device lock
    footer = bytes(60) + b"3695"
    return header + body + footer


def write_rpk(path: Path, network_info: str | None = None, intrinsics: dict | None = None,
              registers: bytes = b"", blocks: int = 2) -> Path:
    """A network.rpk at ``path`` (the firmware blocks are filler)."""
    files = {"imx500_regs": registers, "network_info.txt": (network_info or network_info_text()).encode()}
    if intrinsics is not None:
        files["network_intrinsics"] = json.dumps(intrinsics).encode()
    data = b"".join(firmware_block(bytes([i + 1]) * (100 + 36 * i)) for i in range(blocks))
    path.write_bytes(data + cpio_archive(files))
    return path
