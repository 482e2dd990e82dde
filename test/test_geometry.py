"""Crop / paste-back round trips, stream <-> sensor coordinates, borders."""

from __future__ import annotations

import numpy as np
import pytest

from picosam3_ros.core.crop import (
    CropRect,
    InvalidRoiError,
    crop_and_resize,
    crop_rect_for_box,
    resize_to_crop,
)
from picosam3_ros.core.pipeline import PromptResult, Status, compose_frame_mask
from picosam3_ros.core.postprocess import mask_from_logits
from picosam3_ros.core.sensor_geometry import IMX500_SENSOR_SIZE, SensorGeometry, default_scaler_crop


def test_crop_is_padded_square_and_centred():
    rect = crop_rect_for_box((100, 100, 50, 100), (640, 480))
    assert rect.width == rect.height == 120
    assert rect.x + rect.width / 2 == pytest.approx(125, abs=1)
    assert rect.y + rect.height / 2 == pytest.approx(150, abs=1)


@pytest.mark.parametrize(
    "box, expected",
    # Shrunk symmetrically about the visible box's centre: the object stays centred.
    [((-20, -20, 60, 60), CropRect(0, 0, 40, 40)), ((600, 450, 80, 80), CropRect(600, 450, 40, 30))],
)
def test_crop_is_clipped_at_borders(box, expected):
    assert crop_rect_for_box(box, (640, 480)) == expected


@pytest.mark.parametrize("box", [(float("nan"), 0, 10, 10), (0, 0, 0, 10), (0, 0, 10, -1), (700, 10, 20, 20)])
def test_invalid_boxes(box):
    with pytest.raises(InvalidRoiError):
        crop_rect_for_box(box, (640, 480))


def test_crop_and_resize_to_crop_round_trip():
    rng = np.random.default_rng(1)
    rect = CropRect(40, 30, 96, 96)  # same size as the network input: resize is the identity
    values = rng.normal(size=(96, 96)).astype(np.float32)
    frame = np.full((160, 200), -5.0, np.float32)
    frame[rect.y : rect.y_end, rect.x : rect.x_end] = resize_to_crop(values, rect)
    np.testing.assert_allclose(crop_and_resize(frame, rect, 96), values, atol=1e-6)


def test_mask_paste_back_lands_inside_the_crop():
    rect = crop_rect_for_box((300, 200, 60, 40), (640, 480))
    mask, score = mask_from_logits(np.full((96, 96), 3.0, np.float32), rect, 0.5)
    assert mask.shape == (rect.height, rect.width) and (mask == 255).all() and score > 0.9
    label = compose_frame_mask([PromptResult(1, Status.OK, crop=rect, crop_mask=mask)], (640, 480))
    ys, xs = np.nonzero(label)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (rect.x, rect.y, rect.x_end, rect.y_end)


def test_label_encoding_later_entry_wins_and_invalid_keep_index():
    a = CropRect(0, 0, 10, 10)
    b = CropRect(5, 5, 10, 10)
    full = np.full((10, 10), 255, np.uint8)
    results = [
        PromptResult(1, Status.OK, crop=a, crop_mask=full),
        PromptResult(2, Status.INVALID_ROI),
        PromptResult(3, Status.OK, crop=b, crop_mask=full),
    ]
    label = compose_frame_mask(results, (20, 20))
    assert label[0, 0] == 1 and label[7, 7] == 3 and label[14, 14] == 3 and label[19, 19] == 0
    assert 2 not in label


@pytest.mark.parametrize("stream", [(640, 480), (1280, 720), (2028, 1520), (320, 240)])
def test_stream_sensor_round_trip_is_exact(stream):
    geometry = SensorGeometry(stream, default_scaler_crop(stream))
    rng = np.random.default_rng(2)
    for _ in range(200):
        x, y = int(rng.integers(0, stream[0] - 2)), int(rng.integers(0, stream[1] - 2))
        w, h = int(rng.integers(1, stream[0] - x)), int(rng.integers(1, stream[1] - y))
        rect = CropRect(x, y, w, h)
        sensor = geometry.stream_rect_to_sensor(rect)
        assert geometry.sensor_rect_to_stream(sensor) == rect
        # The sensor rectangle covers the stream rectangle and stays inside the ScalerCrop.
        cx, cy, cw, ch = geometry.scaler_crop
        assert cx <= sensor[0] and cy <= sensor[1]
        assert sensor[0] + sensor[2] <= cx + cw and sensor[1] + sensor[3] <= cy + ch


def test_scaler_crop_keeps_the_stream_aspect():
    assert default_scaler_crop((640, 480)) == (2, 0, 4052, 3040)
    x, y, w, h = default_scaler_crop((1280, 720))
    assert (x, w) == (0, 4056) and abs(w / h - 16 / 9) < 1e-3 and y == (3040 - h) // 2


def test_full_stream_maps_to_scaler_crop_and_outside_is_none():
    geometry = SensorGeometry((1280, 720), default_scaler_crop((1280, 720)))
    assert geometry.stream_rect_to_sensor(CropRect(0, 0, 1280, 720)) == geometry.scaler_crop
    assert geometry.sensor_rect_to_stream((0, 0, 4056, 100)) is None  # above the 16:9 crop
    assert geometry.sensor_rect_to_stream((0, 0, *IMX500_SENSOR_SIZE)) == CropRect(0, 0, 1280, 720)


def test_crop_contains_the_visible_box_and_stays_centred_on_it():
    rng = np.random.default_rng(7)
    for _ in range(500):
        width, height = (int(v) for v in rng.integers(20, 800, 2))
        x, y = rng.uniform(-0.3, 1.0) * width, rng.uniform(-0.3, 1.0) * height
        box = (x, y, rng.uniform(1, width), rng.uniform(1, height))
        try:
            rect = crop_rect_for_box(box, (width, height))
        except InvalidRoiError:
            continue
        x0, x1 = max(box[0], 0), min(box[0] + box[2], width)
        y0, y1 = max(box[1], 0), min(box[1] + box[3], height)
        assert 0 <= rect.x <= x0 and x1 <= rect.x_end <= width
        assert 0 <= rect.y <= y0 and y1 <= rect.y_end <= height
        # Centred on the visible box within the outward rounding (one pixel each side).
        assert abs((rect.x + rect.x_end) / 2 - (x0 + x1) / 2) <= 1.0
        assert abs((rect.y + rect.y_end) / 2 - (y0 + y1) / 2) <= 1.0
