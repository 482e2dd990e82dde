"""core.prompt_wire against rclpy's own serializer: the same fields, bounded reads, clear errors."""

from __future__ import annotations

import random
import struct

import pytest

from picosam3_ros.core.prompt_wire import WireFormatError, read_prompt_array


def serialized(prompts, frame_id=""):
    from rclpy.serialization import serialize_message

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    array.header.frame_id = frame_id
    array.header.stamp.sec = 12345
    for prompt_id, (x, y, w, h), prompt_frame, *follow in prompts:
        prompt = RoiPrompt(id=prompt_id, follow=follow[0] if follow else 0)
        prompt.header.frame_id = prompt_frame
        prompt.header.stamp.nanosec = 999
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
        prompt.roi.do_rectify = bool(prompt_id % 2)
        array.prompts.append(prompt)
    return serialize_message(array)


def random_prompts(rng: random.Random, count: int):
    frames = ["", "camera", "é/ü ☃", "x" * 37, "a\tb"]
    return [
        (rng.randrange(2**32), tuple(rng.randrange(2**32) for _ in range(4)), rng.choice(frames),
         rng.randrange(3))
        for _ in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 2, 7, 300])
def test_reads_what_rclpy_wrote(count):
    rng = random.Random(count)
    prompts = random_prompts(rng, count)
    wire = read_prompt_array(serialized(prompts, "left_camera"), limit=1024)
    assert wire.frame_id == "left_camera" and wire.total == count
    assert [(p.prompt_id, p.box_xywh, p.frame_id, p.follow) for p in wire.prompts] == prompts


def test_reads_only_the_first_entries_of_a_huge_array():
    prompts = [(i, (i, 1, 2, 3), "") for i in range(50_000)]
    wire = read_prompt_array(serialized(prompts), limit=16)
    assert wire.total == 50_000 and [p.prompt_id for p in wire.prompts] == list(range(16))


def test_big_endian_cdr():
    # The same array as a big-endian writer sends it: frame_id "", one prompt.
    body = struct.pack(">iI", 1, 2) + struct.pack(">I", 1) + b"\x00"  # header, frame_id ""
    body += b"\x00" * 3 + struct.pack(">I", 1)  # align, count
    body += struct.pack(">iI", 0, 0) + struct.pack(">I", 4) + b"cam\x00"  # prompt header
    body += struct.pack(">5I", 7, 10, 20, 40, 30) + b"\x01\x02"  # id, x, y, height, width, do_rectify, follow
    wire = read_prompt_array(b"\x00\x00\x00\x00" + body, limit=8)
    assert [(p.prompt_id, p.box_xywh, p.frame_id, p.follow) for p in wire.prompts] == [
        (7, (10, 20, 30, 40), "cam", 2)]


MILLION = b"\x00\x01\x00\x00" + struct.pack("<iII", 0, 0, 1) + b"\x00" * 4 + struct.pack("<I", 10**6)


@pytest.mark.parametrize(
    "data, limit, text",
    [
        (b"\x00\x01", 16, "too short"),
        (b"\x00\x07\x00\x00" + b"\x00" * 20, 16, "not plain CDR"),
        (None, 16, "truncated"),
        (MILLION, 16, "truncated"),  # entries it reads are missing
        (MILLION, 0, "claims 1000000 prompts"),  # entries it skips could not fit
    ],
)
def test_malformed_bytes_raise_one_clear_error(data, limit, text):
    if data is None:
        data = bytes(serialized([(1, (1, 2, 3, 4), "camera")]))[:-10]
    with pytest.raises(WireFormatError, match=text):
        read_prompt_array(data, limit)


def test_random_truncations_never_raise_anything_else():
    data = bytes(serialized(random_prompts(random.Random(1), 20), "camera"))
    for end in range(len(data)):
        try:
            read_prompt_array(data[:end], limit=1024)
        except WireFormatError:
            pass
