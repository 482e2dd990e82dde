"""The one post-processing step: network logits -> a crop-local mask (ROS-free).

Every path uses it: the CPU backend's results (``pipeline.segment_frame``), the sensor
path's host side (``pipeline.sensor_frame_results``), bag evaluation, ``picosam3_train
evaluate``, and training itself (the loss sees the box-clipped logits through
:func:`box_keep_map`, so the network spends its capacity inside the box).

Box-aware output: the prompt box bounds the object, so pixels farther than
``box_margin`` (a fraction of the box's width/height) outside the box are background
whatever the network says. ``box_margin=None`` turns the clip off.

The clip follows the evidence (``grow_threshold``): a box is often too small (detector
jitter, a followed or lagged box), and then the object goes on beyond it. Outside the
grown box a pixel is kept when the network is confident there (probability above
``grow_threshold``) and it is connected, through such confident pixels, to the mask
inside the box. Confident blobs that do not touch the object (a neighbour) stay cut.

Which threshold and margin (:class:`Postprocess`): the node's ``threshold`` and
``box_margin`` parameters (bag_eval's and ``picosam3_train evaluate``'s options) over the
model card's ``postprocess`` block (a model brings its own calibration, chosen on dev val
by ``picosam3_train evaluate --sweep`` / ``package``) over the plain network output
(:data:`RAW_POSTPROCESS`: p > 0.5, no clip) for a card without the block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from picosam3_ros.core.crop import CropRect, resize_to_crop


@dataclass(frozen=True)
class Postprocess:
    """Object probability threshold (0..1), box margin (fraction of the box; None = no clip)
    and the probability above which the mask grows beyond the clip (None = a hard clip)."""

    threshold: float = 0.5
    box_margin: float | None = None
    grow_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, got {self.threshold}")
        if self.box_margin is not None and not float(self.box_margin) >= 0.0:
            raise ValueError(f"box_margin must be >= 0 or None, got {self.box_margin}")
        if self.grow_threshold is not None and not 0.0 < float(self.grow_threshold) < 1.0:
            raise ValueError(
                f"grow_threshold must be strictly between 0 and 1 or None, got {self.grow_threshold}"
            )

    def with_overrides(self, threshold: float | None = None, box_margin: float | None = None) -> Postprocess:
        """A copy with the given values replaced (None keeps the current one)."""
        changes: dict[str, Any] = {}
        if threshold is not None:
            changes["threshold"] = float(threshold)
        if box_margin is not None:
            changes["box_margin"] = float(box_margin)
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float | None]:
        return {
            "threshold": self.threshold,
            "box_margin": self.box_margin,
            "grow_threshold": self.grow_threshold,
        }

    def label(self) -> str:
        margin = "no clip" if self.box_margin is None else f"margin {self.box_margin:g}"
        grow = ""
        if self.grow_threshold is not None and self.box_margin is not None:
            grow = f", grow at p>{self.grow_threshold:g}"
        return f"p>{self.threshold:g}, {margin}{grow}"


def add_postprocess_arguments(parser) -> None:
    """``--threshold``, ``--box-margin`` and ``--no-box-clip``, for every tool that runs the
    node's post-processing (bag_eval, ``picosam3_train evaluate``); see postprocess_in_use."""
    parser.add_argument("--threshold", type=float, default=None,
                        help="the node's object probability threshold (default: the model card's, else 0.5)")
    parser.add_argument("--box-margin", type=float, default=None,
                        help="clip masks to the prompt box grown by this fraction of its size "
                        "(default: the model card's, else no clip)")
    parser.add_argument("--no-box-clip", action="store_true", help="keep the network's whole output")


# The network's plain output: logits > 0, nothing clipped (the papers' protocol).
RAW_POSTPROCESS = Postprocess(0.5, None)


def postprocess_from_card(block: Mapping[str, Any] | None) -> Postprocess:
    """The model card's ``postprocess`` block ({"threshold": p, "box_margin": m or null});
    a card without it gets the plain network output (:data:`RAW_POSTPROCESS`)."""
    if not block:
        return RAW_POSTPROCESS
    margin = block.get("box_margin", RAW_POSTPROCESS.box_margin)
    grow = block.get("grow_threshold")
    return Postprocess(
        float(block.get("threshold", RAW_POSTPROCESS.threshold)),
        None if margin is None else float(margin),
        None if grow is None else float(grow),
    )


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


def _clip(
    logits: np.ndarray, inside: np.ndarray, keep: np.ndarray, grow_threshold: float | None
) -> np.ndarray:
    """``inside`` cut to ``keep``, grown back where it continues confidently (module docstring)."""
    clipped = inside & keep
    if grow_threshold is None or keep.all() or not clipped.any():
        return clipped
    strong = (logits > logit_threshold(grow_threshold)) & ~keep
    if not strong.any():
        return clipped
    count, labels = cv2.connectedComponents((clipped | strong).astype(np.uint8), connectivity=8)
    touching = np.zeros(count, bool)
    touching[np.unique(labels[clipped])] = True
    return clipped | (strong & touching[labels])


def grid_mask(
    logits: np.ndarray,
    crop: CropRect,
    threshold: float,
    box_xywh: Sequence[float] | None = None,
    box_margin: float | None = None,
    grow_threshold: float | None = None,
) -> np.ndarray:
    """The same step on the network's own grid: bool (S, S), for crop-space metrics."""
    logits = np.asarray(logits)
    inside = logits > logit_threshold(threshold)
    if box_xywh is not None and box_margin is not None:
        height, width = logits.shape[-2:]
        keep = box_keep_map(box_xywh, crop, box_margin, (width, height))
        inside = _clip(logits, inside, keep, grow_threshold)
    return inside


def mask_from_logits(
    logits: np.ndarray,
    crop: CropRect,
    threshold: float,
    box_xywh: Sequence[float] | None = None,
    box_margin: float | None = None,
    grow_threshold: float | None = None,
) -> tuple[np.ndarray, float]:
    """Network logits (S, S) -> crop-local uint8 mask (255 = object) and its mean probability.

    ``threshold`` is an object probability. With a box and a margin, pixels outside the
    grown box are background unless the mask continues there above ``grow_threshold``
    (see the module docstring).
    """
    resized = resize_to_crop(logits, crop)
    inside = resized > logit_threshold(threshold)
    if box_xywh is not None and box_margin is not None:
        keep = box_keep_map(box_xywh, crop, box_margin, (crop.width, crop.height))
        inside = _clip(resized, inside, keep, grow_threshold)
    mask = inside.astype(np.uint8) * np.uint8(255)
    if not inside.any():
        return mask, 0.0
    probs = 1.0 / (1.0 + np.exp(-np.clip(resized[inside], -60.0, 60.0)))
    return mask, float(probs.mean())
