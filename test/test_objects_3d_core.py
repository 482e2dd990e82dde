"""core/objects_3d: a real frame's ground-truth object, synthetic depth, and the masks a node really sends.

The object is the bus of the fixture image 471 (COCO, test/fixtures/train/README.md) with its
ground-truth mask; its depth is 1.0 m, the background 2.0 m, 2% of the pixels are holes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
from depth_scene import depth_mm, gt_centroid, intrinsics

from picosam3_ros.core.coco_dataset import decode_segmentation
from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.core.image_conversion import ImageConversionError, depth_array
from picosam3_ros.core.objects_3d import (
    CameraInfoError,
    DepthSettings,
    Intrinsics,
    StampMatcher,
    Status,
    cloud_data,
    front_surface,
    intrinsics_for,
    locate_object,
    read_cloud,
    sampling_stride,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "train"
SETTINGS = DepthSettings()


@pytest.fixture(scope="module")
def scene():
    """(frame mask of the bus, its crop rect, intrinsics) on the real image 471."""
    data = json.loads((FIXTURES / "instances_fixture_val.json").read_text())
    info = data["images"][0]
    height, width = info["height"], info["width"]
    bus = max(data["annotations"], key=lambda a: a["area"])
    mask = decode_segmentation(bus["segmentation"], height, width)
    assert cv2.imread(str(FIXTURES / "images" / info["file_name"])).shape[:2] == (height, width)
    rect = crop_rect_for_box(bus["bbox"], (width, height))
    fx, fy, cx, cy = intrinsics(width, height)
    return mask, rect, Intrinsics(fx, fy, cx, cy, width, height)


def crop_of(frame_mask: np.ndarray, rect) -> np.ndarray:
    """The crop-local mono8 mask of a full-frame bool mask (what Segmentation.mask carries)."""
    return (frame_mask[rect.y:rect.y_end, rect.x:rect.x_end] * 255).astype(np.uint8)


def locate(mask_frame, rect, intr, depth, scale=0.001, settings=SETTINGS):
    return locate_object(7, crop_of(mask_frame, rect), (rect.x, rect.y), depth, scale, intr, settings, 0.9)


def test_ground_truth_mask_gives_the_ground_truth_centroid(scene):
    mask, rect, intr = scene
    result = locate(mask, rect, intr, depth_mm(mask))
    assert result.status == Status.OK and result.prompt_id == 7 and result.score == 0.9
    error = np.linalg.norm(np.array(result.centroid) - gt_centroid(mask))
    assert error < 0.005, error  # decimated (every 4th pixel here) and 2% holes: within 5 mm
    assert result.stride == sampling_stride(int(mask[rect.y:rect.y_end, rect.x:rect.x_end].sum()), 5000) > 1
    assert result.valid_points <= SETTINGS.max_points and result.object_points == result.valid_points
    assert result.front_depth == pytest.approx(1.0, abs=1e-6)
    assert result.extent_min[2] == pytest.approx(1.0) and result.extent_max[2] == pytest.approx(1.0)
    # The bus spans about 460 x 212 px at f = 525 px: 0.88 m x 0.40 m at 1 m (1st-99th percentile).
    width_m, height_m = (result.extent_max[i] - result.extent_min[i] for i in (0, 1))
    assert 0.80 < width_m < 0.88 and 0.33 < height_m < 0.41, (width_m, height_m)


def test_a_mask_leaking_onto_the_background_does_not_pull_the_centroid(scene):
    """The box itself as the mask (a third of it is background here) and a mask grown by 25 px."""
    mask, rect, intr = scene
    depth = depth_mm(mask)
    box = np.zeros_like(mask)
    box[rect.y:rect.y_end, rect.x:rect.x_end] = True
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((51, 51), np.uint8)).astype(bool)
    truth = gt_centroid(mask)
    for leaking in (box, grown):
        sampled = leaking[rect.y:rect.y_end, rect.x:rect.x_end]
        assert (sampled & ~mask[rect.y:rect.y_end, rect.x:rect.x_end]).sum() > 0.2 * sampled.sum()
        result = locate(leaking, rect, intr, depth)
        assert result.status == Status.OK
        assert np.linalg.norm(np.array(result.centroid) - truth) < 0.02
        assert result.extent_max[2] < 1.01  # the background is not part of the object
        assert result.object_points < 0.85 * result.valid_points
        # What a mean over the mask would say: tens of centimetres off (the test can fail).
        v, u = np.nonzero(leaking & (depth > 0))
        z = depth[v, u] / 1000.0
        naive = np.array([((u - intr.cx) * z / intr.fx).mean(), ((v - intr.cy) * z / intr.fy).mean(),
                          z.mean()])
        assert np.linalg.norm(naive - truth) > 0.2


def test_flying_pixels_between_object_and_background_do_not_join_them(scene):
    """Real depth cameras smear the edge: 1% of the mask's pixels anywhere between 1 and 2 m."""
    mask, rect, intr = scene
    depth = depth_mm(mask).astype(np.float32) / 1000.0
    box = np.zeros_like(mask)
    box[rect.y:rect.y_end, rect.x:rect.x_end] = True
    rng = np.random.default_rng(3)
    smear = box & (rng.random(mask.shape) < 0.01)
    depth[smear] = rng.uniform(1.0, 2.0, int(smear.sum()))
    result = locate(box, rect, intr, depth, scale=1.0)
    assert result.status == Status.OK and result.extent_max[2] < 1.06
    assert np.linalg.norm(np.array(result.centroid) - gt_centroid(mask)) < 0.02


def test_the_front_surface_keeps_a_deep_object_whole_and_ignores_a_few_stray_points():
    rng = np.random.default_rng(0)
    cup = rng.uniform(0.80, 0.88, 900)  # one surface, 8 cm deep, no gap
    wall = rng.uniform(1.50, 1.52, 600)
    stray = np.full(10, 0.40)  # 10 pixels of something in front: under 10% of the points
    near, far = front_surface(np.concatenate([stray, cup, wall]), SETTINGS)
    assert near <= 0.80 and 0.88 <= far < 1.5
    # Too deep to be one object: cut max_object_depth behind the front.
    ramp = np.linspace(1.0, 3.0, 5000)
    near, far = front_surface(ramp, SETTINGS)
    assert near <= 1.0 and far == pytest.approx(near + SETTINGS.max_object_depth)


def test_holes_units_and_range(scene):
    mask, rect, intr = scene
    mm = depth_mm(mask, holes=0.0)
    metres = mm.astype(np.float32) / 1000.0
    in_mm, in_m = locate(mask, rect, intr, mm), locate(mask, rect, intr, metres, scale=1.0)
    assert in_mm.centroid == pytest.approx(in_m.centroid, abs=1e-6)
    holes = np.zeros_like(mm)
    assert locate(mask, rect, intr, holes).status == Status.NO_DEPTH  # zero is no data, not 0 m
    nan = np.full(metres.shape, np.nan, np.float32)
    result = locate(mask, rect, intr, nan, scale=1.0)
    assert result.status == Status.NO_DEPTH and result.valid_points == 0 and "depth" in result.detail
    far = locate(mask, rect, intr, mm, settings=DepthSettings(max_depth=0.5))
    assert far.status == Status.NO_DEPTH
    empty = locate(np.zeros_like(mask), rect, intr, mm)
    assert empty.status == Status.NO_DEPTH and empty.valid_points == 0


def test_a_crop_outside_the_depth_image_is_refused(scene):
    mask, rect, intr = scene
    small = depth_mm(mask)[:200, :300]  # a depth image that is not aligned to the segmented frame
    result = locate(mask, rect, intr, small)
    assert result.status == Status.BAD_DEPTH_IMAGE and "aligned" in result.detail


def test_camera_info_checks():
    k = [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1]
    assert intrinsics_for(k, (640, 480), (640, 480)) == Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    with pytest.raises(CameraInfoError, match="320x240.*640x480"):
        intrinsics_for(k, (320, 240), (640, 480))
    with pytest.raises(CameraInfoError, match="uncalibrated"):
        intrinsics_for([0.0] * 9, (640, 480), (640, 480))


def test_work_is_bounded_by_max_points(scene):
    mask, rect, intr = scene
    depth = depth_mm(mask)
    for max_points, tolerance in ((100, 0.03), (1000, 0.01), (5000, 0.005), (100_000, 0.002)):
        result = locate(mask, rect, intr, depth, settings=DepthSettings(max_points=max_points))
        assert result.valid_points <= max_points * 1.05
        assert np.linalg.norm(np.array(result.centroid) - gt_centroid(mask)) < tolerance, max_points


def test_depth_images_from_the_wire():
    depth = np.array([[0, 1000, 65535], [2000, 3, 4]], np.uint16)
    padded = np.zeros((2, 8), np.uint8)
    padded[:, :6] = depth.astype("<u2").view(np.uint8).reshape(2, 6)
    msg = NS(encoding="16UC1", height=2, width=3, step=8, is_bigendian=0, data=padded.tobytes())
    pixels, scale = depth_array(msg)
    assert scale == 0.001 and pixels.tolist() == depth.tolist()
    big = NS(encoding="16UC1", height=2, width=3, step=6, is_bigendian=1, data=depth.astype(">u2").tobytes())
    assert depth_array(big)[0].astype(np.uint16).tolist() == depth.tolist()
    metres = np.array([[1.5, np.nan]], np.float32)
    pixels, scale = depth_array(NS(encoding="32FC1", height=1, width=2, step=8, is_bigendian=0,
                                   data=metres.tobytes()))
    assert scale == 1.0 and pixels[0, 0] == 1.5 and np.isnan(pixels[0, 1])
    for bad in (NS(encoding="rgb8", height=1, width=1, step=3, is_bigendian=0, data=b"abc"),
                NS(encoding="16UC1", height=2, width=3, step=6, is_bigendian=0, data=b"\0" * 10)):
        with pytest.raises(ImageConversionError):
            depth_array(bad)


def test_cloud_records_carry_the_prompt_id(scene):
    mask, rect, intr = scene
    depth = depth_mm(mask)
    crop, origin = crop_of(mask, rect), (rect.x, rect.y)
    first = locate_object(3, crop, origin, depth, 0.001, intr, SETTINGS)
    second = locate_object(2**32 - 1, crop, origin, depth, 0.001, intr, SETTINGS)
    none = locate_object(5, crop, origin, np.zeros_like(depth), 0.001, intr, SETTINGS)
    data, count = cloud_data([first, none, second])
    records = read_cloud(data)
    assert count == len(records) == first.object_points + second.object_points and len(data) == 16 * count
    assert set(records["prompt_id"].tolist()) == {3, 2**32 - 1}
    mine = records[records["prompt_id"] == 3]
    assert np.allclose([mine["x"].mean(), mine["y"].mean(), mine["z"].mean()], first.centroid, atol=1e-4)


def test_stamp_matcher_pairs_waits_and_gives_up():
    ms = 1_000_000
    matcher = StampMatcher(tolerance_ns=10 * ms, timeout_ns=500 * ms, depth_capacity=3, pending_capacity=2)
    for stamp in (0, 33, 66):
        assert matcher.add_depth(stamp * ms, f"depth{stamp}") == []
    assert matcher.add_segmentation(38 * ms, "seg38", 0) == "depth33"  # nearest within 10 ms
    assert matcher.add_segmentation(50 * ms, "seg50", 0) is None  # 16 ms from both: waits
    assert matcher.add_segmentation(100 * ms, "seg100", 1 * ms) is None  # its depth is late
    assert matcher.add_depth(99 * ms, "depth99") == [("seg100", "depth99")]
    assert matcher.add_depth(132 * ms, "depth132") == []
    assert matcher.add_segmentation(0, "seg0", 2 * ms) is None  # depth0 fell out of the 3 kept
    assert matcher.expired(400 * ms) == []
    assert matcher.expired(501 * ms) == ["seg50"] and matcher.expired(600 * ms) == ["seg0"]
    for i in range(3):  # more than pending_capacity wait: the oldest is answered at once
        matcher.add_segmentation((1000 + 100 * i) * ms, f"late{i}", 700 * ms)
    assert matcher.expired(700 * ms) == ["late0"]
