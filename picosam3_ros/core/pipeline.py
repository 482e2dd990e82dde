"""Frames + prompts -> per-prompt results and the frame's label mask (ROS-free).

The ``mask`` topic encoding (also used by bag evaluation for multi-prompt ground
truth): a mono8 image of the full frame size, where

* 0 means background;
* value k (1..255) means "object of the k-th entry (1-based) of the
  SegmentationArray published for the same frame" (same header stamp);
* where two masks overlap, the later entry wins;
* entries past the 255th share the value 255 (max_prompts is capped at 255).

Only entries with status OK draw into the mask; the others keep their index
(the index is the array position, not the prompt id), so a consumer can always
look up ``segmentations[k - 1].prompt_id``.

Two producers of results:

* :func:`segment_frame` for a :class:`~picosam3_ros.core.backend_api.CropSegmenter`
  (CPU): one crop per prompt through ``picosam3_ros.core.crop``, one batched network
  call, paste-back through the same module.
* :func:`sensor_frame_results` for a sensor frame: only the prompt whose ROI was
  in effect for that frame gets a mask; the others are NOT_SERVED.

Attributing a sensor output (:func:`sensor_output_serves`): the output carries the
prompt id, the crop and the box its ROI was requested for. A new ROI takes effect
some frames after it is written, so while one prompt id moves (a tracker updating
``roi`` every frame) the outputs in between were made for an earlier box. They are
still given to the prompt when that box overlaps its current one by
``SAME_OBJECT_IOU`` (the same object, moved): the result's ``crop`` is the crop the
sensor actually used, so the mask lands where that object was. A prompt id reused for
another object (boxes overlapping less) gets NOT_SERVED until its own ROI is in effect.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

import numpy as np

from picosam3_ros.core.backend_api import CropSegmenter, SensorFrame, SensorInference
from picosam3_ros.core.crop import CropRect, InvalidRoiError, crop_and_resize, crop_rect_for_box
from picosam3_ros.core.follow import FOLLOW_DEFAULT
from picosam3_ros.core.metrics import box_iou
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, mask_from_logits

# A sensor output requested for an earlier box of the same prompt id still belongs to the
# prompt when the two boxes overlap at least this much (see the module docstring).
SAME_OBJECT_IOU = 0.5


class Status(IntEnum):
    """Mirrors the constants of picosam3_msgs/Segmentation."""

    OK = 0
    INVALID_ROI = 1
    STALE_PROMPT = 2
    BACKEND_ERROR = 3
    NOT_SERVED = 4
    TOO_MANY_PROMPTS = 5
    LOST = 6


@dataclass(frozen=True)
class Prompt:
    """A box prompt: id, (x, y, w, h) in stream pixels, when it was received (ns, node clock), and
    whether it is followed (``core.follow``: FOLLOW_DEFAULT = the node's choice, FOLLOW, FIXED)."""

    prompt_id: int
    box_xywh: tuple[float, float, float, float]
    stamp_ns: int = 0
    frame_id: str = ""
    follow: int = FOLLOW_DEFAULT


@dataclass
class PromptResult:
    """The result for one prompt on one frame.

    crop: the region fed to the network, in frame pixels (None unless OK or NOT_SERVED with a crop).
    box: the box the mask was made for (frame pixels): the prompt's box, or its followed box; on the
        sensor path the box the ROI in effect was requested for. Without a mask: the prompt's box.
    crop_mask: uint8 (crop.height, crop.width), 255 = object (None unless OK).
    logits96: the raw network output (S, S) float32 (None unless OK).
    score: mean object probability inside the mask (0 unless OK).
    latency_ms: frame arrival (or sensor readout) to result.
    detail: a human-readable reason for a non-OK status.
    """

    prompt_id: int
    status: Status
    crop: CropRect | None = None
    box: tuple[float, float, float, float] | None = None
    crop_mask: np.ndarray | None = None
    logits96: np.ndarray | None = None
    score: float = 0.0
    backend: str = ""
    latency_ms: float = 0.0
    detail: str = ""


def _elapsed_ms(t0_ns: int | None) -> float:
    return 0.0 if t0_ns is None else (time.monotonic_ns() - t0_ns) / 1e6


def segment_frame(
    segmenter: CropSegmenter,
    frame_rgb: np.ndarray,
    prompts: Sequence[Prompt],
    postprocess: Postprocess = RAW_POSTPROCESS,
    arrival_ns: int | None = None,
    border: str = "shrink",
) -> list[PromptResult]:
    """Segment ``prompts`` on one RGB frame with one batched call; results in prompt order.

    Each mask goes through ``postprocess.mask_from_logits`` with ``postprocess``'s threshold and
    the prompt's own box (clipped to it grown by the box margin; None = no clip). ``border``
    picks the crop rule's border handling ("cut" only for evaluating the papers' protocol).
    Most callers want :class:`picosam3_ros.Predictor`, which holds the segmenter and the setting.

    Invalid boxes (NaN, zero-size, outside the frame) get INVALID_ROI; a failing
    network call gives every valid prompt BACKEND_ERROR. Never raises for bad prompts.
    """
    height, width = frame_rgb.shape[:2]
    size = segmenter.input_size
    results: list[PromptResult] = [
        PromptResult(p.prompt_id, Status.OK, box=tuple(p.box_xywh), backend=segmenter.name) for p in prompts
    ]
    crops: list[np.ndarray] = []
    served: list[int] = []
    for index, prompt in enumerate(prompts):
        try:
            rect = crop_rect_for_box(prompt.box_xywh, (width, height), border=border)
        except InvalidRoiError as exc:
            results[index].status = Status.INVALID_ROI
            results[index].detail = str(exc)
            continue
        results[index].crop = rect
        crops.append(crop_and_resize(frame_rgb, rect, size))
        served.append(index)
    if served:
        try:
            logits = segmenter.infer(np.stack(crops))
        except Exception as exc:  # any backend failure becomes a status, never a crash
            for index in served:
                results[index].status = Status.BACKEND_ERROR
                results[index].detail = str(exc)
                results[index].latency_ms = _elapsed_ms(arrival_ns)
            return results
        for row, index in enumerate(served):
            result = results[index]
            result.logits96 = logits[row]
            result.crop_mask, result.score = mask_from_logits(
                logits[row], result.crop, postprocess.threshold, prompts[index].box_xywh,
                postprocess.box_margin, postprocess.grow_threshold,
            )
    latency = _elapsed_ms(arrival_ns)
    for result in results:
        result.latency_ms = latency
    return results


def sensor_output_serves(inference: SensorInference | None, prompt: Prompt) -> bool:
    """True when the sensor output is this prompt's: its id, and its box or one of the same object."""
    if inference is None or inference.logits is None or inference.crop is None:
        return False
    if inference.prompt_id != prompt.prompt_id:
        return False
    if inference.box_xywh is None:  # a source that does not report the box: by id alone
        return True
    if tuple(inference.box_xywh) == tuple(float(v) for v in prompt.box_xywh):
        return True
    return box_iou(inference.box_xywh, prompt.box_xywh) >= SAME_OBJECT_IOU


def sensor_frame_results(
    frame: SensorFrame,
    prompts: Sequence[Prompt],
    postprocess: Postprocess = RAW_POSTPROCESS,
    backend: str = "sensor",
    arrival_ns: int | None = None,
    crops: Sequence[CropRect | InvalidRoiError] | None = None,
) -> list[PromptResult]:
    """Results for a sensor frame: the prompt the output serves (:func:`sensor_output_serves`) gets the mask.

    The box clip (``postprocess.box_margin``) uses the box the ROI was requested for, carried with
    the inference (``SensorInference.box_xywh``); without it the mask is not clipped.

    The crop reported is the ROI in effect for this frame (mapped to stream
    pixels), which can differ from the prompt's current box when the box moved
    after the ROI was requested: the mask is attributed to what the sensor saw,
    and post-processed with the box that ROI was made from.
    ``crops``: each prompt's crop (or the reason it has none), when the caller has them already.
    """
    height, width = frame.image_rgb.shape[:2]
    inference = frame.inference
    results = []
    for index, prompt in enumerate(prompts):
        crop = prompt_crop(prompt, (width, height)) if crops is None else crops[index]
        if isinstance(crop, InvalidRoiError):
            results.append(
                PromptResult(prompt.prompt_id, Status.INVALID_ROI, box=tuple(prompt.box_xywh),
                             backend=backend, detail=str(crop))
            )
            continue
        if not sensor_output_serves(inference, prompt):
            results.append(
                PromptResult(
                    prompt.prompt_id, Status.NOT_SERVED, box=tuple(prompt.box_xywh), backend=backend,
                    detail="waiting for its turn"
                )
            )
            continue
        # The box the sensor's ROI was made from, not the prompt's current one (it may have moved).
        box = inference.box_xywh if inference.box_xywh is not None else prompt.box_xywh
        mask, score = mask_from_logits(
            inference.logits, inference.crop, postprocess.threshold, box_xywh=box,
            box_margin=postprocess.box_margin, grow_threshold=postprocess.grow_threshold,
        )
        results.append(
            PromptResult(
                prompt.prompt_id,
                Status.OK,
                crop=inference.crop,
                box=tuple(float(v) for v in box),
                crop_mask=mask,
                logits96=inference.logits,
                score=score,
                backend=backend,
            )
        )
    latency = _elapsed_ms(arrival_ns)
    for result in results:
        result.latency_ms = latency
    return results


def prompt_crop(prompt: Prompt, frame_size: tuple[int, int]) -> CropRect | InvalidRoiError:
    """The prompt's crop (``core.crop``), or the error that says why it has none."""
    try:
        return crop_rect_for_box(prompt.box_xywh, frame_size)
    except InvalidRoiError as exc:
        return exc


def frame_box(box: Sequence[float] | None, frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A (followed) box as whole frame pixels clipped to the frame (``Segmentation.box``); None when
    there is no box or nothing of it is inside the frame."""
    if box is None or len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        return None
    x, y, w, h = (float(v) for v in box)
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(int(frame_size[0]), round(x + w)), min(int(frame_size[1]), round(y + h))
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


def compose_frame_mask(results: Sequence[PromptResult], frame_size: tuple[int, int]) -> np.ndarray:
    """The ``mask`` topic image: uint8 (height, width); value k = results[k-1] (see module doc)."""
    width, height = frame_size
    frame = np.zeros((height, width), np.uint8)
    for index, result in enumerate(results):
        if result.status != Status.OK or result.crop is None or result.crop_mask is None:
            continue
        rect = result.crop
        region = frame[rect.y : rect.y_end, rect.x : rect.x_end]
        region[result.crop_mask > 0] = min(index + 1, 255)
    return frame
