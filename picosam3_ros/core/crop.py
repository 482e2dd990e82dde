"""The one crop rule of PicoSAM3, shared by training, evaluation and both backends.

A box prompt is turned into the network input like this (PicoSAM2/3 papers): pad
the box by 10% of its size on each side, take the square of side max(w', h')
around the box centre, keep it inside the image, and resize that rectangle to
96x96 *without* keeping aspect (as the IMX500 ISP resizes its hardware ROI).

Keeping the crop inside the image: the square is shrunk *symmetrically about the
box centre* on each axis where it would leave the frame (the box is first clipped
to the frame). The prompt is implicit -- the network only knows "the object is in
the middle" -- so the object must stay centred. Cutting the square at the border
instead (what the sensor does with an ROI that leaves the frame) moves the object
off-centre, and the network then segments whatever is in the middle: with the
same trained model, dev-val full-frame mIoU was 0.569 with that border cut and
0.590 with symmetric shrinking (large objects 0.508 -> 0.545), while box-as-mask
stays at 0.561 either way. The rectangle always contains the whole visible box;
only the padding shrinks. Every ROI we give the sensor is therefore already
inside the frame, so the sensor never clips it.

The papers' rule (``border="cut"``) is kept as an option of the same function for
evaluation under their protocol: the padded square around the box centre, cut where
it leaves the frame (so an object at the border sits off-centre in the crop).

Everything here is ROS-free and works in pixel coordinates of one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

MODEL_INPUT_SIZE = 96
PAD_FRACTION = 0.1
# Bump when crop_rect_for_box changes: caches of crops (picosam3_train) are keyed on it.
CROP_RULE_VERSION = 2  # 2: symmetric shrinking at the frame border
BORDER_RULES = ("shrink", "cut")  # the project's rule, the papers' rule (see the module docstring)


class InvalidRoiError(ValueError):
    """A box that cannot be turned into a crop (NaN, zero-size, outside the image)."""


@dataclass(frozen=True)
class CropRect:
    """An integer pixel rectangle inside an image: [x, x + width) x [y, y + height)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x_end(self) -> int:
        return self.x + self.width

    @property
    def y_end(self) -> int:
        return self.y + self.height

    def as_xywh(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


def crop_rect_for_box(
    box_xywh: Sequence[float],
    image_size: tuple[int, int],
    pad_fraction: float = PAD_FRACTION,
    border: str = "shrink",
) -> CropRect:
    """Return the crop the network sees for a box prompt.

    Args:
        box_xywh: (x, y, width, height) of the prompt box in pixels; x, y is the
            top-left corner. Parts outside the image are allowed.
        image_size: (width, height) of the image in pixels.
        pad_fraction: padding added on each side, as a fraction of the box size.
        border: "shrink" (the project's rule, used by both backends) shrinks the square
            symmetrically to stay in the frame; "cut" (the papers' rule, for evaluation)
            cuts it at the frame border.

    Raises:
        InvalidRoiError: for non-finite values, non-positive size, or a box that
            does not overlap the image.
    """
    image_width, image_height = int(image_size[0]), int(image_size[1])
    if image_width <= 0 or image_height <= 0:
        raise InvalidRoiError(f"image size must be positive, got {image_width}x{image_height}")
    if len(box_xywh) != 4:
        raise InvalidRoiError(f"box must be (x, y, width, height), got {box_xywh!r}")
    x, y, width, height = (float(v) for v in box_xywh)
    if not all(math.isfinite(v) for v in (x, y, width, height)):
        raise InvalidRoiError(f"box has non-finite values: {box_xywh!r}")
    if width <= 0 or height <= 0:
        raise InvalidRoiError(f"box must have positive size, got {width}x{height}")
    if border not in BORDER_RULES:
        raise ValueError(f"border must be one of {BORDER_RULES}, got {border!r}")

    # The visible part of the box (a detector's box may poke out of the frame).
    x0, x1 = max(x, 0.0), min(x + width, float(image_width))
    y0, y1 = max(y, 0.0), min(y + height, float(image_height))
    if x1 <= x0 or y1 <= y0:
        raise InvalidRoiError(
            f"box {box_xywh!r} lies outside the {image_width}x{image_height} image"
        )
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * pad_fraction) / 2.0
    half_x = half_y = half_side
    if border == "shrink":
        # Shrink each axis symmetrically so the square stays in the frame and centred on the box.
        half_x = min(half_side, centre_x, image_width - centre_x)
        half_y = min(half_side, centre_y, image_height - centre_y)
    # else "cut": the clamping below cuts the square at the frame border.
    # Outward rounding keeps the whole (clipped) padded rectangle.
    left = max(0, math.floor(centre_x - half_x))
    top = max(0, math.floor(centre_y - half_y))
    right = min(image_width, max(left + 1, math.ceil(centre_x + half_x)))
    bottom = min(image_height, max(top + 1, math.ceil(centre_y + half_y)))
    return CropRect(left, top, right - left, bottom - top)


def crop_and_resize(
    image: np.ndarray,
    rect: CropRect,
    size: int = MODEL_INPUT_SIZE,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Cut ``rect`` out of ``image`` (HxW or HxWxC) and stretch it to size x size.

    Use ``cv2.INTER_LINEAR`` for images and ``cv2.INTER_NEAREST`` for masks.
    """
    patch = image[rect.y : rect.y_end, rect.x : rect.x_end]
    if patch.shape[0] != rect.height or patch.shape[1] != rect.width:
        raise InvalidRoiError(f"{rect} does not fit an image of shape {image.shape}")
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def resize_to_crop(crop_values: np.ndarray, rect: CropRect) -> np.ndarray:
    """Resize a network output (float, HxW) to the crop's own width x height."""
    return cv2.resize(
        np.asarray(crop_values, dtype=np.float32),
        (rect.width, rect.height),
        interpolation=cv2.INTER_LINEAR,
    )
