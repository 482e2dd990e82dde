"""Segmentation metrics shared by picosam3_train's evaluator and bag_eval.

Protocol of the PicoSAM papers: IoU per instance, averaged (mIoU); an instance
whose prediction and ground truth are both empty has IoU 1 (empty union).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

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
