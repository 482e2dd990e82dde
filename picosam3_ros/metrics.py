"""Segmentation metrics shared by picosam3_train's evaluator and bag_eval.

Protocol of the PicoSAM papers: IoU per instance, averaged (mIoU); an instance
whose prediction and ground truth are both empty has IoU 1 (empty union).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from picosam3_ros.crop import CropRect, crop_and_resize

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


def crop_space_iou(crop_logits: np.ndarray, ground_truth_full: np.ndarray, rect: CropRect) -> float:
    """The papers' crop-space IoU of one instance (torch-free; used by bag_eval and the trainer).

    ``crop_logits``: the network's square output for the crop ``rect`` (object where > 0).
    ``ground_truth_full``: the instance's full-image mask (0 / non-zero). The ground truth
    is cut with the one crop rule and resized (nearest) to the output size.
    """
    size = int(crop_logits.shape[-1])
    gt_full = (np.asarray(ground_truth_full) != 0).astype(np.uint8)
    gt_crop = crop_and_resize(gt_full, rect, size=size, interpolation=cv2.INTER_NEAREST)
    return mask_iou(np.asarray(crop_logits).reshape(size, size) > 0, gt_crop)


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
