"""The sensor node's output messages, built from its results (``sensor_node._publish`` sends them).

* ``segmentations``: one :class:`Segmentation` per entry (a result, or a carried result with the
  header of its own frame), crop-local mono8 masks, the crop and the box each mask was made for;
* ``mask``: the frame's label image (``pipeline.compose_frame_mask``);
* ``overlay``: the frame with the masks tinted;
* ``detections``: each OK mask's box, prompt id and score (:func:`detection_entries`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sensor_msgs.msg import Image, RegionOfInterest

from picosam3_msgs.msg import Segmentation, SegmentationArray
from picosam3_ros.core.image_conversion import fill_image
from picosam3_ros.core.pipeline import PromptResult, Status, frame_box

OVERLAY_TINT = np.array([255, 0, 255])


def segmentation(result: PromptResult, header, frame_size: tuple[int, int]) -> Segmentation:
    """One entry of ``segmentations``: ``header`` is its own frame's (a carried mask keeps its)."""
    seg = Segmentation(
        header=header,
        prompt_id=int(result.prompt_id) & 0xFFFFFFFF,
        status=int(result.status),
        score=float(result.score),
        backend=result.backend,
        latency_ms=float(result.latency_ms),
    )
    if result.crop is not None:
        seg.crop = RegionOfInterest(
            x_offset=result.crop.x, y_offset=result.crop.y, width=result.crop.width, height=result.crop.height
        )
    box = frame_box(result.box, frame_size)
    if box is not None:
        seg.box = RegionOfInterest(x_offset=box[0], y_offset=box[1], width=box[2], height=box[3])
    seg.mask.header = header
    if result.status in (Status.OK, Status.NOT_SERVED) and result.crop_mask is not None:
        fill_image(seg.mask, result.crop_mask, "mono8")
    else:
        seg.mask.encoding = "mono8"
    return seg


def segmentation_array(header, entries: Sequence[tuple[PromptResult, object]],
                       frame_size: tuple[int, int]) -> SegmentationArray:
    """``segmentations`` for a frame: entries are (result, the header of the frame it was made on)."""
    array = SegmentationArray(header=header)
    array.segmentations = [segmentation(result, entry_header, frame_size) for result, entry_header in entries]
    return array


def label_image(header, label: np.ndarray) -> Image:
    msg = Image(header=header)
    fill_image(msg, label, "mono8")
    return msg


def overlay_image(header, rgb: np.ndarray, label: np.ndarray) -> Image:
    overlay = rgb.copy()
    tinted = label > 0
    overlay[tinted] = (overlay[tinted] * 0.5 + OVERLAY_TINT * 0.5).astype(np.uint8)
    msg = Image(header=header)
    fill_image(msg, overlay, "rgb8")
    return msg


def mask_box(result: PromptResult, prompt_boxes: dict[int, tuple]) -> tuple | None:
    """The box (x, y, w, h, frame px) the result's mask was made for: what ``detections`` carries.

    The result's own box (``Segmentation.box``: the followed box, or on the sensor path the box
    its ROI was written for); the prompt's box as the store holds it for a result without one.
    """
    return result.box if result.box is not None else prompt_boxes.get(result.prompt_id)


def detection_entries(header, results: Sequence[PromptResult], prompt_boxes: dict[int, tuple]) -> list:
    """(header, prompt id, box, score) of each OK mask, for ``DetectionTypes.boxes_2d``."""
    entries = []
    for result in results:
        box = mask_box(result, prompt_boxes) if result.status == Status.OK else None
        if box is not None:
            entries.append((header, int(result.prompt_id) & 0xFFFFFFFF, box, result.score))
    return entries
