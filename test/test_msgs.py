"""picosam3_msgs: built, importable, documented, and byte-exact through rclpy's serializer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ament_index_python import get_resource
from rclpy.serialization import deserialize_message, serialize_message

from picosam3_msgs.msg import (
    Object3D,
    Object3DArray,
    RoiPrompt,
    RoiPromptArray,
    Segmentation,
    SegmentationArray,
)

MSG_DIR = Path(__file__).resolve().parent.parent / "picosam3_msgs" / "msg"
STATUS_NAMES = [
    "OK", "INVALID_ROI", "STALE_PROMPT", "BACKEND_ERROR", "NOT_SERVED", "TOO_MANY_PROMPTS", "LOST"]


def make_prompts() -> RoiPromptArray:
    msg = RoiPromptArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123_456_789
    msg.header.frame_id = "camera"
    for prompt_id, (x, y, w, h) in [(7, (10, 20, 30, 40)), (4_000_000_000, (0, 0, 4056, 3040))]:
        prompt = RoiPrompt()
        prompt.header = msg.header
        prompt.id = prompt_id
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
        msg.prompts.append(prompt)
    return msg


def make_segmentations() -> SegmentationArray:
    msg = SegmentationArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_001, 5
    msg.header.frame_id = "camera"

    ok = Segmentation()
    ok.header = msg.header
    ok.prompt_id = 7
    ok.crop.x_offset, ok.crop.y_offset, ok.crop.width, ok.crop.height = 4, 14, 42, 42
    ok.mask.header = msg.header
    ok.mask.height, ok.mask.width, ok.mask.encoding, ok.mask.step = 3, 4, "mono8", 4
    ok.mask.data = bytes([0, 255, 255, 0, 255, 255, 255, 255, 0, 0, 255, 0])
    ok.score = 0.8125  # exactly representable in float32
    ok.status = Segmentation.OK
    ok.backend = "onnx"
    ok.latency_ms = 12.5

    invalid = Segmentation()
    invalid.header = msg.header
    invalid.prompt_id = 8
    invalid.status = Segmentation.INVALID_ROI
    invalid.backend = "imx500"

    msg.segmentations = [ok, invalid]
    return msg


def test_interfaces_are_registered_in_the_ament_index():
    content, prefix = get_resource("rosidl_interfaces", "picosam3_msgs")
    names = ["RoiPrompt", "RoiPromptArray", "Segmentation", "SegmentationArray", "Object3D", "Object3DArray"]
    for name in names:
        assert f"msg/{name}.msg" in content.splitlines()
        assert (Path(prefix) / "share" / "picosam3_msgs" / "msg" / f"{name}.msg").is_file()


def test_field_types_match_the_design():
    assert RoiPrompt.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "id": "uint32", "roi": "sensor_msgs/RegionOfInterest", "follow": "uint8"}
    assert RoiPromptArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "prompts": "sequence<picosam3_msgs/RoiPrompt>"}
    assert Segmentation.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "prompt_id": "uint32", "crop": "sensor_msgs/RegionOfInterest",
        "box": "sensor_msgs/RegionOfInterest", "mask": "sensor_msgs/Image", "score": "float",
        "status": "uint8", "backend": "string", "latency_ms": "float"}
    assert SegmentationArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "segmentations": "sequence<picosam3_msgs/Segmentation>"}
    assert Object3D.get_fields_and_field_types() == {
        "prompt_id": "uint32", "status": "uint8", "centroid": "geometry_msgs/Point",
        "extent_min": "geometry_msgs/Point", "extent_max": "geometry_msgs/Point", "front_depth": "float",
        "valid_points": "uint32", "object_points": "uint32", "sample_stride": "uint32", "score": "float"}
    assert Object3DArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "frame_stamp": "builtin_interfaces/Time",
        "objects": "sequence<picosam3_msgs/Object3D>"}


def test_object_status_constants_mirror_the_core():
    from picosam3_ros.core.objects_3d import Status as ObjectStatus

    assert {s.name: int(s) for s in ObjectStatus} == {
        name: getattr(Object3D, name) for name in ("OK", "NO_DEPTH", "NO_DEPTH_IMAGE", "BAD_CAMERA_INFO",
                                                   "BAD_DEPTH_IMAGE")}


def test_constants_mirror_the_core():
    """The core's status codes and follow modes are the messages' (their numbering never changes)."""
    from picosam3_ros.core import follow
    from picosam3_ros.core.pipeline import Status

    assert {s.name: int(s) for s in Status} == {name: getattr(Segmentation, name) for name in STATUS_NAMES}
    assert (RoiPrompt.FOLLOW_DEFAULT, RoiPrompt.FOLLOW, RoiPrompt.FIXED) == (
        follow.FOLLOW_DEFAULT, follow.FOLLOW, follow.FIXED)
    assert RoiPrompt().follow == RoiPrompt.FOLLOW_DEFAULT


def test_status_constants_are_distinct_and_ok_is_zero():
    values = {name: getattr(Segmentation, name) for name in STATUS_NAMES}
    assert values["OK"] == 0
    assert len(set(values.values())) == len(values)
    assert Segmentation().status == Segmentation.OK  # the default is a valid status


@pytest.mark.parametrize("make", [make_prompts, make_segmentations], ids=["prompts", "segmentations"])
def test_round_trip_through_the_serializer(make):
    original = make()
    data = serialize_message(original)
    restored = deserialize_message(data, type(original))
    assert restored == original
    # Same wire size (CDR padding bytes are not guaranteed to be zeroed, so no byte compare).
    assert len(serialize_message(restored)) == len(data)


def test_round_trip_keeps_values_of_nested_arrays():
    restored = deserialize_message(serialize_message(make_segmentations()), SegmentationArray)
    ok, invalid = restored.segmentations
    assert restored.header.stamp.sec == 1_700_000_001 and restored.header.frame_id == "camera"
    assert (ok.crop.x_offset, ok.crop.y_offset, ok.crop.width, ok.crop.height) == (4, 14, 42, 42)
    assert (ok.mask.height, ok.mask.width, ok.mask.encoding, ok.mask.step) == (3, 4, "mono8", 4)
    assert bytes(ok.mask.data) == bytes([0, 255, 255, 0, 255, 255, 255, 255, 0, 0, 255, 0])
    assert (ok.score, ok.status, ok.backend, ok.latency_ms) == (0.8125, Segmentation.OK, "onnx", 12.5)
    assert (invalid.prompt_id, invalid.status, invalid.backend) == (8, Segmentation.INVALID_ROI, "imx500")
    assert invalid.mask.width == 0 and len(invalid.mask.data) == 0

    prompts = deserialize_message(serialize_message(make_prompts()), RoiPromptArray).prompts
    assert [p.id for p in prompts] == [7, 4_000_000_000]  # full uint32 range survives
    assert (prompts[1].roi.width, prompts[1].roi.height) == (4056, 3040)


def test_a_different_message_does_not_deserialize_as_equal():
    data = serialize_message(make_segmentations())
    other = make_segmentations()
    other.segmentations[0].mask.data[5] = 0
    assert deserialize_message(data, SegmentationArray) != other


@pytest.mark.parametrize("msg_file", sorted(MSG_DIR.glob("*.msg")), ids=lambda p: p.name)
def test_every_field_and_constant_is_documented(msg_file):
    """The issue asks for a comment with unit and frame above every field."""
    undocumented = []
    previous = ""
    for line in msg_file.read_text().splitlines():
        stripped = line.strip()
        is_field = stripped and not stripped.startswith("#") and re.match(r"^[\w/\[\]<=]+\s+\w+", stripped)
        if is_field and not previous.startswith("#"):
            undocumented.append(stripped)
        previous = stripped
    assert not undocumented, f"{msg_file.name}: no comment above {undocumented}"
