"""The one post-processing step: network logits -> a crop-local mask (ROS-free).

Every path uses it: the CPU backend's results (``pipeline.segment_frame``), the sensor
path's host side (``pipeline.sensor_frame_results``), bag evaluation, ``picosam3_train
evaluate``, and training itself (the loss sees the box-clipped logits through
:func:`box_keep_map`, so the network spends its capacity inside the box).

Box-aware output: the prompt box bounds the object, so pixels farther than
``box_margin`` (a fraction of the box's width/height) outside the box are background
whatever the network says. ``box_margin=None`` turns the clip off.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from picosam3_ros.core.crop import CropRect, resize_to_crop


def logit_threshold(probability: float) -> float:
    """Probability threshold (0..1) -> logit threshold."""
    p = min(max(float(probability), 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


def box_keep_map(
    box_xywh: Sequence[float],
    rect: CropRect,
    margin: float,
    out_size: tuple[int, int],
) -> np.ndarray:
    """Where a mask may be: bool (out_h, out_w) over ``rect`` resampled to ``out_size``.

    A pixel is kept when its centre, in frame coordinates, lies inside the box grown by
    ``margin`` times the box's width (left/right) and height (top/bottom). ``out_size`` is
    (width, height): (96, 96) for the network's grid, (rect.width, rect.height) for the crop.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    out_w, out_h = int(out_size[0]), int(out_size[1])
    left, right = x - margin * w, x + w + margin * w
    top, bottom = y - margin * h, y + h + margin * h
    cols = rect.x + (np.arange(out_w, dtype=np.float64) + 0.5) * (rect.width / out_w)
    rows = rect.y + (np.arange(out_h, dtype=np.float64) + 0.5) * (rect.height / out_h)
    keep_cols = (cols >= left) & (cols < right)
    keep_rows = (rows >= top) & (rows < bottom)
    return keep_rows[:, None] & keep_cols[None, :]


def mask_from_logits(
    logits: np.ndarray,
    crop: CropRect,
    threshold: float,
    box_xywh: Sequence[float] | None = None,
    box_margin: float | None = None,
) -> tuple[np.ndarray, float]:
    """Network logits (S, S) -> crop-local uint8 mask (255 = object) and its mean probability.

    ``threshold`` is an object probability. With a box and a margin, pixels outside the
    grown box are background (see the module docstring).
    """
    resized = resize_to_crop(logits, crop)
    inside = resized > logit_threshold(threshold)
    if box_xywh is not None and box_margin is not None:
        inside &= box_keep_map(box_xywh, crop, box_margin, (crop.width, crop.height))
    mask = inside.astype(np.uint8) * np.uint8(255)
    if not inside.any():
        return mask, 0.0
    probs = 1.0 / (1.0 + np.exp(-np.clip(resized[inside], -60.0, 60.0)))
    return mask, float(probs.mean())
