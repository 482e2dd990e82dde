"""A ``picosam3_msgs/RoiPromptArray`` read straight from its serialized (CDR) bytes, in bounded work.

Why: rclpy turns a message into Python objects before any callback sees it, one object
per field. An array of 50,000 prompts (2 MB) took the node's executor about a second to
deserialize, during which no frame was taken in. The node subscribes to ``prompts`` raw
and reads here only the entries it will keep (``limit``) plus the array's length, which
costs the same for 50,000 entries as for 1,024.

The layout is the standard ROS 2 wire format: a 4-byte encapsulation header (plain CDR,
little or big endian) then the fields in order, each aligned to its size relative to the
end of that header::

    RoiPromptArray: Header header, RoiPrompt[] prompts (uint32 count, then the entries)
    RoiPrompt:      Header header, uint32 id, RegionOfInterest roi, uint8 follow
    Header:         int32 sec, uint32 nanosec, string frame_id (uint32 length incl. NUL, bytes)
    RegionOfInterest: uint32 x_offset, y_offset, height, width; bool do_rectify

``test/test_prompt_wire.py`` holds it to rclpy's own serializer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Encapsulation identifiers (RTPS / DDS-XTypes): plain CDR, big and little endian.
_CDR_BE = b"\x00\x00"
_CDR_LE = b"\x00\x01"


class WireFormatError(ValueError):
    """The bytes are not a RoiPromptArray this reader understands (truncated, or another encoding)."""


@dataclass(frozen=True)
class WirePrompt:
    prompt_id: int
    box_xywh: tuple[int, int, int, int]
    frame_id: str
    follow: int = 0  # RoiPrompt.follow


@dataclass(frozen=True)
class WirePromptArray:
    frame_id: str
    prompts: list[WirePrompt]  # the first ``limit`` entries
    total: int  # entries in the message


class _Reader:
    def __init__(self, data: bytes | memoryview):
        if len(data) < 4:
            raise WireFormatError(f"{len(data)} bytes: too short for a serialized message")
        encapsulation = bytes(data[:2])
        if encapsulation not in (_CDR_BE, _CDR_LE):
            raise WireFormatError(f"encapsulation {encapsulation.hex()} is not plain CDR")
        self.data = memoryview(data)[4:]
        self.prefix = "<" if encapsulation == _CDR_LE else ">"
        self.pos = 0

    def uint32s(self, count: int) -> tuple[int, ...]:
        self.pos += -self.pos % 4
        end = self.pos + 4 * count
        if end > len(self.data):
            raise WireFormatError("message truncated")
        values = struct.unpack_from(f"{self.prefix}{count}I", self.data, self.pos)
        self.pos = end
        return values

    def string(self) -> str:
        (length,) = self.uint32s(1)
        end = self.pos + length
        if end > len(self.data):
            raise WireFormatError("message truncated inside a string")
        text = bytes(self.data[self.pos : end]).rstrip(b"\x00").decode("utf-8", errors="replace")
        self.pos = end
        return text

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise WireFormatError("message truncated")
        value = self.data[self.pos]
        self.pos += 1
        return int(value)

    def header_frame_id(self) -> str:
        self.uint32s(2)  # stamp: the node stamps prompts on arrival
        return self.string()


def read_prompt_array(data: bytes | memoryview, limit: int) -> WirePromptArray:
    """The array's frame_id, its first ``limit`` prompts and its length; raises WireFormatError."""
    reader = _Reader(data)
    frame_id = reader.header_frame_id()
    (total,) = reader.uint32s(1)
    prompts = []
    for _ in range(min(total, max(0, limit))):
        prompt_frame_id = reader.header_frame_id()
        prompt_id, x, y, height, width = reader.uint32s(5)
        reader.byte()  # do_rectify
        follow = reader.byte()
        prompts.append(WirePrompt(prompt_id, (x, y, width, height), prompt_frame_id, follow))
    # Each entry takes at least 30 bytes: a count the bytes cannot hold is a corrupt message.
    if total > len(prompts) and (total - len(prompts)) * 30 > len(reader.data) - reader.pos:
        raise WireFormatError(f"the array claims {total} prompts but the message is too short")
    return WirePromptArray(frame_id, prompts, total)


def limit_array(data: bytes | memoryview, limit: int) -> tuple[bytes | memoryview, int]:
    """A message that starts ``Header header, T[] entries`` (a RoiPromptArray, a vision_msgs
    Detection2DArray, a yolo_msgs DetectionArray) cut to its first ``limit`` entries, for rclpy
    to deserialize in bounded work: (the bytes, with the count rewritten if over ``limit``; the
    count in the message). Raises WireFormatError for bytes without that beginning."""
    reader = _Reader(data)
    reader.header_frame_id()
    (total,) = reader.uint32s(1)
    if total <= limit:
        return data, total
    cut = bytearray(data)
    struct.pack_into(f"{reader.prefix}I", cut, 4 + reader.pos - 4, max(0, limit))
    return bytes(cut), total
