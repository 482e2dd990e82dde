"""Segmentation metrics shared by picosam3_train's evaluator and bag_eval.

The per-instance crop-space functions live here (torch-free) so that the
runtime (bag_eval) and the trainer compute exactly the same numbers.

Protocol of the PicoSAM papers: IoU per instance, averaged (mIoU); an instance
whose prediction and ground truth are both empty has IoU 1 (empty union).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from picosam3_ros.core.crop import MODEL_INPUT_SIZE, CropRect, crop_and_resize
from picosam3_ros.core.postprocess import box_keep_map

# COCO's area buckets (pixels of the ground-truth instance in the full image).
SMALL_AREA_MAX = 32 * 32
MEDIUM_AREA_MAX = 96 * 96
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # .50:.05:.95


def mask_iou(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """IoU of two boolean (or 0/non-zero) masks of the same shape; 1.0 if both are empty."""
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"mask shapes differ: {prediction.shape} vs {ground_truth.shape}")
    pred = prediction.astype(bool)
    gt = ground_truth.astype(bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes; 0.0 when either is empty."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = max(0.0, aw) * max(0.0, ah) + max(0.0, bw) * max(0.0, bh) - inter
    return inter / union if union > 0 else 0.0


def mean_iou(ious: Iterable[float]) -> float:
    values = np.asarray(list(ious), dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def mean_fraction_above_iou_thresholds(
    ious: Sequence[float], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> float:
    """The papers' "mAP": for each IoU threshold, the fraction of instances whose
    IoU reaches it, averaged over thresholds .50:.05:.95. It is not COCO AP
    (there is no ranking by score); the name says what it is."""
    values = np.asarray(ious, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return float(np.mean([(values >= t).mean() for t in thresholds]))


def size_bucket(area_pixels: float) -> str:
    """COCO size class of an instance from its full-image mask area."""
    if area_pixels < SMALL_AREA_MAX:
        return "small"
    if area_pixels < MEDIUM_AREA_MAX:
        return "medium"
    return "large"


# Per-instance core of the crop-space protocol.
def gt_crop(mask_full: np.ndarray, rect: CropRect, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Ground-truth mask in crop space: the crop rule with nearest resampling."""
    return crop_and_resize(mask_full.astype(np.uint8), rect, size, cv2.INTER_NEAREST).astype(bool)


def in_rect_iou(pred_in_rect: np.ndarray, gt_region: np.ndarray, gt_total: int) -> float:
    """Full-frame IoU of a mask that is empty outside its rectangle (a pasted crop mask), from the
    mask and the ground truth inside that rectangle and the ground truth's full-frame pixel count."""
    inter = int(np.logical_and(pred_in_rect, gt_region).sum())
    union = int(np.count_nonzero(pred_in_rect)) + int(gt_total) - inter
    return 1.0 if union == 0 else inter / union


@dataclass(frozen=True)
class InstanceTruth:
    """One instance's ground truth as the scorer reads it, cut once per crop: through the crop rule
    onto the network's grid (``grid``), inside the crop rectangle (``region``), and its full-frame
    pixel count (``total``)."""

    grid: np.ndarray
    region: np.ndarray
    total: int

    @classmethod
    def cut(cls, gt_full: np.ndarray, rect: CropRect, size: int = MODEL_INPUT_SIZE,
            total: int | None = None) -> InstanceTruth:
        region = gt_full[rect.y : rect.y_end, rect.x : rect.x_end]
        total = int(np.count_nonzero(gt_full)) if total is None else total
        return cls(gt_crop(gt_full, rect, size), region, total)


def score_instance(truth: InstanceTruth, grid_pred: np.ndarray, crop_pred: np.ndarray) -> tuple[float, float]:
    """The one instance scorer (bag evaluation and ``picosam3_train evaluate``): (crop space, full
    frame) IoU of one mask, given on the network's grid (``grid_pred``, the post-processing there:
    ``postprocess.grid_mask``) and in its crop's pixels (``crop_pred``, the mask the node publishes)."""
    return mask_iou(grid_pred, truth.grid), in_rect_iou(crop_pred, truth.region, truth.total)


def crop_space_iou(logits: np.ndarray, gt_crop_mask: np.ndarray) -> float:
    """The papers' per-instance IoU: ``logits > 0`` against the cropped GT (empty union = 1)."""
    return mask_iou(np.asarray(logits) > 0, gt_crop_mask)


CROWDING_BUCKETS = ("0", "1-2", "3+")


def objects_in_crop(rect: CropRect, boxes: Sequence[Sequence[float]], own: int) -> int:
    """How many other objects a crop shows: the boxes (xywh, the image's other annotated
    instances; ``own`` is the prompted one's index) with at least half their area inside
    ``rect``. The PicoSAM3 authors report mIoU by this count (0, 1-2, 3 or more)."""
    count = 0
    for k, (x, y, w, h) in enumerate(boxes):
        if k == own or w <= 0 or h <= 0:
            continue
        ix = max(0.0, min(x + w, rect.x_end) - max(x, rect.x))
        iy = max(0.0, min(y + h, rect.y_end) - max(y, rect.y))
        count += ix * iy >= 0.5 * w * h
    return count


def crowding_bucket(count: int) -> str:
    """0, 1-2 or 3+ other objects in the crop (:data:`CROWDING_BUCKETS`)."""
    return "0" if count <= 0 else ("1-2" if count <= 2 else "3+")


def box_mask_in_rect(box_xywh: Sequence[float], rect: CropRect) -> np.ndarray:
    """The box itself as a mask over ``rect``'s frame pixels: bool (rect.height, rect.width),
    True where the pixel centre lies inside the box (the box clip's rule, margin 0)."""
    return box_keep_map(box_xywh, rect, 0.0, (rect.width, rect.height))


def box_mask_in_crop(box_xywh: Sequence[float], rect: CropRect, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """The box itself as a mask, in crop space, on the same pixels as the ground truth: the
    frame pixels whose centre lies inside the box, taken through the crop rule like a GT mask
    (nearest). On instances_val2017_dev.json this scores 0.561 (crop mIoU, GT boxes)."""
    region = box_mask_in_rect(box_xywh, rect).astype(np.uint8)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


def jitter_box(
    box_xywh: Sequence[float], fraction: float, rng: np.random.Generator, min_size: float = 1.0
) -> tuple[float, float, float, float]:
    """A detector-like box: each side moved by N(0, fraction) of the box's width (left,
    right) or height (top, bottom); the box keeps at least ``min_size`` px per axis."""
    x, y, w, h = (float(v) for v in box_xywh)
    dl, dt, dr, db = rng.normal(0.0, fraction, 4)
    left, right = x + dl * w, x + w + dr * w
    top, bottom = y + dt * h, y + h + db * h
    if right - left < min_size:
        left, right = (left + right - min_size) / 2.0, (left + right + min_size) / 2.0
    if bottom - top < min_size:
        top, bottom = (top + bottom - min_size) / 2.0, (top + bottom + min_size) / 2.0
    return (left, top, right - left, bottom - top)
