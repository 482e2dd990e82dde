"""The Teacher interface: a soft mask for a box prompt, in the standard crop frame.

Every teacher answers ``predict(image_rgb, box_xywh) -> TeacherOutput``: the
probability (0..1) that each pixel of the *standard* 96x96 crop
(``crop_rect_for_box`` + ``crop_and_resize``) is the object, plus a confidence
score in 0..1. Teachers that want more pixels or context run on the same padded
square crop at their own resolution (``run_on_context``) and their result is
resampled into the standard frame, so the student and every teacher agree on
geometry to the pixel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from picosam3_ros.core.crop import MODEL_INPUT_SIZE, CropRect, crop_rect_for_box


@dataclass
class TeacherOutput:
    probability: np.ndarray  # float32 (96, 96), 0..1, standard crop frame
    score: float  # teacher confidence, 0..1


class Teacher(ABC):
    """A box-promptable segmenter used to make soft targets for distillation."""

    name: str = "teacher"

    @abstractmethod
    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        """Soft mask of the object in ``box_xywh`` (pixels, xywh) of an RGB uint8 image."""

    def provenance(self) -> dict:
        """What to record in the cache's meta.json (weights path, versions, settings)."""
        return {"name": self.name}


def standard_rect(image_rgb: np.ndarray, box_xywh: Sequence[float]) -> CropRect:
    height, width = image_rgb.shape[:2]
    return crop_rect_for_box(box_xywh, (width, height))


def to_standard_frame(patch_values: np.ndarray, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Resample values over the crop rectangle (any resolution) into the size x size crop frame.

    The crop rectangle maps onto the standard frame without keeping aspect (as
    ``crop_and_resize`` does), so a plain bilinear resize is exact."""
    values = np.asarray(patch_values, dtype=np.float32)
    if values.shape == (size, size):
        return values
    return cv2.resize(values, (size, size), interpolation=cv2.INTER_LINEAR)


def run_on_context(
    image_rgb: np.ndarray,
    box_xywh: Sequence[float],
    segment: Callable[[np.ndarray, tuple[float, float, float, float]], tuple[np.ndarray, float]],
) -> TeacherOutput:
    """Cut the padded square crop at full resolution, let ``segment(patch, box_xyxy_in_patch)``
    return (probability over the patch, score), and bring it into the standard frame."""
    rect = standard_rect(image_rgb, box_xywh)
    patch = np.ascontiguousarray(image_rgb[rect.y : rect.y_end, rect.x : rect.x_end])
    x, y, w, h = (float(v) for v in box_xywh)
    box_in_patch = (
        min(max(x - rect.x, 0.0), rect.width),
        min(max(y - rect.y, 0.0), rect.height),
        min(max(x + w - rect.x, 0.0), rect.width),
        min(max(y + h - rect.y, 0.0), rect.height),
    )
    probability, score = segment(patch, box_in_patch)
    if probability.shape != patch.shape[:2]:
        raise ValueError(f"teacher returned {probability.shape} for a {patch.shape[:2]} patch")
    return TeacherOutput(np.clip(to_standard_frame(probability), 0.0, 1.0), float(np.clip(score, 0.0, 1.0)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


def certainty(probability: np.ndarray) -> float:
    """Confidence of a teacher without its own score: mean |2p - 1| (1 = every pixel decided)."""
    return float(np.mean(np.abs(2.0 * np.asarray(probability, np.float32) - 1.0)))
