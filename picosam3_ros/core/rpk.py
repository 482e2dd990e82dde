"""The IMX500 network file (``network.rpk``): read its ``network_info.txt`` and check it (ROS-free).

``imx500-package -i packerOut.zip -o DIR`` (Raspberry Pi OS package ``imx500-tools``)
writes ``DIR/network.rpk``. Its layout, as the readers of the real stack walk it
(raspberrypi/linux ``drivers/media/i2c/imx500.c``: ``imx500_validate_fw_block``,
``imx500_iterate_nw_regs``; raspberrypi/picamera2 ``picamera2/devices/imx500/imx500.py``:
``IMX500.__ni_from_network``; Sony modlib ``modlib/models/model.py``):

* firmware blocks, each a 32-byte header that starts with ``b"9464"`` and the big-endian
  size of header + body, 8 flag bytes at offset 8 (flag 6, bit 0: a 32-byte device-lock
  trailer follows the block), the body, then a 64-byte footer ending in ``b"3695"``;
* then a CPIO archive ("newc", ASCII headers ``070701``) holding ``imx500_regs``
  (7-byte register writes: u16 address, u8 width, u32 value), ``network_info.txt``
  (``key=value`` lines: ``networkNum``, then per ``networkOrdinal=N`` section
  ``inputTensorWidth``, ``inputTensorHeight``, ``inputTensorFormat``, the ISP's
  normalisation registers ``inputTensorNorm_K..``) and, optionally, ``network_intrinsics``
  (JSON: ``task``, ``inference_rate``, ...).

The decoding of the normalisation registers follows picamera2's (13-bit signed offsets
K03/K13/K23, 12-bit signed gains K00/K11/K22 for RGB, K02/K11/K20 for BGR, fixed
shifts 4 and 6; K03 bit 12 set = signed int8 tensor).

The output-tensor count is read from an ``outputTensorNum`` line when there is one (the
field name of Sony's ``sc_dnn_nw_info_t``; not confirmed on a real rpk): without it, only
the input size is checked against the model card.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK_MAGIC = b"9464"
FOOTER_MAGIC = b"3695"
FOOTER_SIZE = 64
DEVICE_LOCK_TRAILER = 32
CPIO_MAGIC = b"070701"
CPIO_HEADER = 110
CPIO_TRAILER = "TRAILER!!!"
NETWORK_INFO = "network_info.txt"
INTRINSICS = "network_intrinsics"
REGISTERS = "imx500_regs"


class RpkError(ValueError):
    """The file is not a readable network.rpk, or it contradicts the model card (one line)."""


@dataclass(frozen=True)
class IspNormalisation:
    """The ISP's fixed-point input normalisation: q = ((((p * div) >> div_shift) + norm) >> norm_shift)."""

    norm_val: tuple[int, int, int] = (0, 0, 0)
    norm_shift: tuple[int, int, int] = (4, 4, 4)
    div_val: tuple[int, int, int] = (1024, 1024, 1024)
    div_shift: int = 6
    signed: bool = False  # int8 tensor (else uint8)

    @property
    def is_identity(self) -> bool:
        """q == p for every pixel (a network that takes raw pixels, as PicoSAM3's does)."""
        return (
            not self.signed
            and self.norm_val == (0, 0, 0)
            and all(d == 1 << (self.div_shift + s) for d, s in zip(self.div_val, self.norm_shift))
        )


IDENTITY_NORMALISATION = IspNormalisation()


@dataclass(frozen=True)
class RpkInfo:
    """What the node needs from a network.rpk."""

    path: Path
    network_info: dict[str, str]  # the first network's keys (networkOrdinal=0)
    input_size: tuple[int, int]  # (width, height)
    input_format: str  # "RGB" or "BGR"
    normalisation: IspNormalisation
    output_count: int | None
    intrinsics: dict | None
    files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def inference_rate(self) -> float | None:
        rate = (self.intrinsics or {}).get("inference_rate")
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def _signed(value: int, bits: int) -> int:
    """A two's-complement field of ``bits`` bits."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def cpio_entries(data: bytes) -> dict[str, bytes]:
    """The files of a newc CPIO archive (name -> content), up to its trailer."""
    entries: dict[str, bytes] = {}
    pos = 0
    while pos + CPIO_HEADER <= len(data):
        if data[pos : pos + 6] != CPIO_MAGIC:
            raise RpkError(f"bad CPIO header at byte {pos} (expected newc {CPIO_MAGIC.decode()})")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        file_size, name_size = fields[6], fields[11]
        name_start = pos + CPIO_HEADER
        name = data[name_start : name_start + name_size].rstrip(b"\0").decode("ascii", "replace")
        body_start = (name_start + name_size + 3) & ~3
        body = data[body_start : body_start + file_size]
        if len(body) != file_size:
            raise RpkError(f"CPIO entry {name!r} is cut short")
        if name == CPIO_TRAILER:
            return entries
        entries[name] = bytes(body)
        pos = (body_start + file_size + 3) & ~3
    raise RpkError("CPIO archive has no trailer")


def cpio_offset(data: bytes) -> int:
    """Where the CPIO archive starts: after the firmware blocks."""
    pos = 0
    while data[pos : pos + 4] == BLOCK_MAGIC:
        if pos + 16 > len(data):
            raise RpkError(f"firmware block at byte {pos} is cut short")
        (size,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        lock = data[pos + 14] & 1
        end = pos + size + FOOTER_SIZE
        if data[end - 4 : end] != FOOTER_MAGIC:
            raise RpkError(f"firmware block at byte {pos} has no {FOOTER_MAGIC.decode()} footer")
        pos = end + (DEVICE_LOCK_TRAILER if lock else 0)
    return pos


def parse_network_info(text: str) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """``network_info.txt`` -> (top-level keys, {networkOrdinal: keys})."""
    top: dict[str, str] = {}
    networks: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise RpkError(f"{NETWORK_INFO}: line {line!r} is not key=value")
        if key == "networkOrdinal":
            current = networks.setdefault(int(value), {})
        elif current is None:
            top[key] = value
        else:
            current[key] = value
    return top, networks


def _normalisation(net: dict[str, str], fmt: str) -> IspNormalisation:
    def reg(name: str) -> int:
        return int(net.get(f"inputTensorNorm_{name}", "0"), 0)

    k03 = reg("K03")
    norm = (_signed(k03, 13), _signed(reg("K13"), 13), _signed(reg("K23"), 13))
    gains = ("K00", "K11", "K22") if fmt == "RGB" else ("K02", "K11", "K20")
    div = tuple(_signed(reg(name), 12) for name in gains)
    return IspNormalisation(norm, (4, 4, 4), div, 6, bool((k03 >> 12) & 1))  # type: ignore[arg-type]


def read_rpk(path: Path | str) -> RpkInfo:
    """Read a network.rpk's network_info.txt (and intrinsics); RpkError with one line if it cannot."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RpkError(f"cannot read {path}: {exc.strerror or exc}") from exc
    offset = cpio_offset(data)
    if offset == 0:
        raise RpkError(f"{path} is not a network.rpk (no {BLOCK_MAGIC.decode()} firmware block)")
    entries = cpio_entries(data[offset:])
    if NETWORK_INFO not in entries:
        raise RpkError(f"{path} has no {NETWORK_INFO} in its CPIO archive")
    top, networks = parse_network_info(entries[NETWORK_INFO].decode("ascii", "replace"))
    if 0 not in networks:
        raise RpkError(f"{path}: {NETWORK_INFO} has no networkOrdinal=0 section")
    net = networks[0]
    try:
        size = (int(net["inputTensorWidth"]), int(net["inputTensorHeight"]))
    except (KeyError, ValueError) as exc:
        raise RpkError(f"{path}: {NETWORK_INFO} lacks a numeric inputTensorWidth/inputTensorHeight") from exc
    fmt = net.get("inputTensorFormat", "RGB")
    count = net.get("outputTensorNum", top.get("outputTensorNum"))
    intrinsics = None
    if INTRINSICS in entries:
        try:
            intrinsics = json.loads(entries[INTRINSICS])
        except ValueError as exc:
            raise RpkError(f"{path}: {INTRINSICS} is not JSON: {exc}") from exc
    return RpkInfo(
        path,
        dict(net),
        size,
        fmt,
        _normalisation(net, fmt),
        int(count) if count is not None and count.strip().isdigit() else None,
        intrinsics,
        tuple(entries),
    )


def check_against_card(info: RpkInfo, input_size: int, output_count: int = 1) -> None:
    """Refuse an rpk whose input size or output count contradicts the model card (RpkError, one line)."""
    if info.input_size != (input_size, input_size):
        w, h = info.input_size
        raise RpkError(
            f"{info.path} takes a {w}x{h} input but the model card says {input_size}x{input_size}: "
            "it was packaged from another network; run imx500-package on this card's packerOut.zip"
        )
    if info.output_count is not None and info.output_count != output_count:
        raise RpkError(
            f"{info.path} has {info.output_count} output tensors but the model card's network has "
            f"{output_count}: it was packaged from another network"
        )


def package_command(packer_out: Path, out_dir: Path) -> str:
    """The exact command that turns ``packerOut.zip`` into ``out_dir/network.rpk`` (run on the Pi)."""
    return f"imx500-package -i {packer_out.resolve()} -o {out_dir.resolve()}"
