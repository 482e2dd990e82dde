"""Offline evaluation of a rosbag2 recording (ROS-free core of ``bag_eval``).

Two modes:

* **run**: play the bag's frames and prompts through the node's own pipeline
  (``picosam3_ros.core.pipeline``: same crop rule, backend and paste-back) on the
  CPU (``onnx``) or the emulated sensor (``imx500``), deterministically;
* **recorded**: score what a live node published (``segmentations``) against
  the bag's ground truth, without running any model.

Bag conventions (the node's own):

* A prompt message (``sensor_msgs/RegionOfInterest`` = one prompt with id 0, or
  ``picosam3_msgs/RoiPromptArray`` = the whole set) applies to the frames logged
  after it, until the next one replaces it; an empty array clears the prompts.
* Ground truth is a ``sensor_msgs/Image`` mono8 carrying the frame's header
  stamp. With one prompt in effect, non-zero = object. With several, value k
  (1..255) = the k-th prompt (1-based) of the array in effect; the same
  encoding as the node's ``mask`` topic, and what ``coco_to_bag`` writes.

Metrics (per instance = one prompt on one frame with ground truth, averaged):

* ``miou_crop``: the papers' protocol, as picosam3_train's evaluator
  (``picosam3_ros.core.metrics.score_instance``): the ground truth cut with the
  crop rule and resized to 96x96 (nearest) against logits > 0. In recorded
  mode there are no logits: the published crop mask, resized (nearest) to 96x96.
  The per-instance functions are shared with picosam3_train.evaluate (which imports
  them from picosam3_ros.core.metrics), so both report the same numbers on the same instances.
* ``miou_full``: IoU of the pasted-back mask and the ground truth in the full frame.
* In run mode the masks go through the node's post-processing (``postprocess``: the
  threshold and box margin of ``--threshold`` / ``--box-margin`` over the model card's),
  and crop-space IoU uses the same step on the network's grid (``postprocess.grid_mask``).
* ``papers``: with ``--protocols project,papers`` (CPU backend) the same frames also go
  through the papers' crop rule (the square cut at the frame border).
* The box baseline, crop space and full frame, on the same pixels: a frame pixel is in
  the box when its centre lies inside the prompt box (``metrics.box_mask_in_rect``).
* ``--box-jitter f``: each prompt side moved by N(0, f) of the box size per frame
  (seeded by ``--seed``, the frame index and the prompt id; rounded to whole pixels as a
  ``RegionOfInterest`` would be); the ground truth is unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from picosam3_ros.core.crop import MODEL_INPUT_SIZE, CropRect, InvalidRoiError, crop_rect_for_box
from picosam3_ros.core.metrics import (
    CROWDING_BUCKETS,
    InstanceTruth,
    box_mask_in_crop,
    box_mask_in_rect,
    crowding_bucket,
    gt_crop,
    jitter_box,
    mask_iou,
    mean_fraction_above_iou_thresholds,
    mean_iou,
    objects_in_crop,
    score_instance,
    size_bucket,
)
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, compose_frame_mask
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, grid_mask
from picosam3_ros.evaluation.bag_io import (
    FRAME_TYPES,
    IMAGE_TYPE,
    PROMPT_ARRAY_TYPE,
    ROI_TYPE,
    SEGMENTATION_ARRAY_TYPE,
    BagError,
    BagPrompt,
    BagReader,
    frame_to_rgb,
    label_array,
    prompts_from_msg,
    stamp_ns,
)

MAX_OVERLAYS = 6


@dataclass
class InstanceScore:
    frame_index: int
    stamp_ns: int
    prompt_id: int
    gt_value: int  # the ground-truth value this prompt maps to (0 = any non-zero)
    gt_area: int
    iou_crop: float
    iou_full: float
    box_iou_crop: float  # the box itself used as the mask (the reference every model must beat)
    box_iou_full: float = float("nan")
    papers_iou_crop: float = float("nan")  # the papers' crop rule (run mode, --protocols ...,papers)
    papers_iou_full: float = float("nan")
    crowding: int = 0  # other prompted objects inside this prompt's crop (metrics.objects_in_crop)


@dataclass
class OverlaySample:
    frame_index: int
    stamp_ns: int
    image_rgb: np.ndarray
    prediction: np.ndarray  # mono8, the node's mask-topic encoding
    ground_truth: np.ndarray | None
    boxes: list[tuple[int, int, int, int]]


@dataclass
class Evaluation:
    mode: str
    backend: str
    bag: str
    topics: dict[str, str]
    frames: int = 0
    frames_with_prompts: int = 0
    frames_with_ground_truth: int = 0
    prompts: int = 0  # (prompt, frame) pairs offered to the pipeline
    prompt_messages: int = 0
    prompt_messages_used: int = 0  # after --prompt-every
    bad_frames: int = 0  # frames the node would drop too (bad encoding, a decompression bomb): skipped
    bad_frame_reason: str = ""  # the first one's
    status_counts: dict[str, int] = field(default_factory=dict)
    unmatched_results: int = 0  # recorded mode: results whose prompt is not in the bag's prompt set
    instances: list[InstanceScore] = field(default_factory=list)
    frame_latency_ms: list[float] = field(default_factory=list)
    frame_times_s: list[float] = field(default_factory=list)  # bag time of each scored frame, from the first
    processing_s: float = 0.0
    bag_duration_s: float = 0.0
    overlays: list[OverlaySample] = field(default_factory=list)
    postprocess: Postprocess | None = None  # run mode: what the pipeline applied
    box_jitter: float = 0.0
    seed: int = 0
    # Following (--follow): every prompt in effect on a frame with ground truth is an instance; a
    # prompt without a mask there (LOST, waiting for its first sensor ROI) scores as an empty mask,
    # and a NOT_SERVED entry carrying its last mask is scored as the node publishes it.
    score_every_prompt: bool = False
    follow: dict | None = None  # what --follow ran with (the report's "follow" block)
    prompt_every: int | None = None  # --prompt-every
    _first_time_ns: int | None = None

    def add_frame(
        self,
        index: int,
        stamp: int,
        time_ns: int,
        frame_rgb: np.ndarray,
        prompts: Sequence[BagPrompt],
        results: Sequence[tuple[PromptResult, str]],
        gt: np.ndarray | None,
        overlay: bool = False,
        max_overlays: int = MAX_OVERLAYS,
        papers_results: Sequence[PromptResult] | None = None,
    ) -> None:
        """Score one frame's results against its ground truth (None: count, do not score).

        ``prompts`` is the prompt set in effect (its order defines the ground-truth
        values); a result whose prompt id is not in it is counted as unmatched.
        ``papers_results``: the same frame under the papers' crop rule, scored beside.
        """
        height, width = frame_rgb.shape[:2]
        self.frames_with_prompts += 1
        if self._first_time_ns is None:
            self._first_time_ns = time_ns
        self.frame_times_s.append((time_ns - self._first_time_ns) / 1e9)
        self.prompts += len(prompts)
        if gt is not None:
            if gt.shape != (height, width):
                raise BagError(
                    f"ground truth at stamp {stamp} is {gt.shape[1]}x{gt.shape[0]}, "
                    f"the frame is {width}x{height}"
                )
            self.frames_with_ground_truth += 1
        index_of = {p.id: k for k, p in enumerate(prompts, start=1)}
        for result, status_name in results:
            self.status_counts[status_name] = self.status_counts.get(status_name, 0) + 1
            has_mask = result.crop is not None and result.crop_mask is not None and (
                result.status == Status.OK or (self.score_every_prompt and result.status == Status.NOT_SERVED)
            )
            if gt is None or not (has_mask or self.score_every_prompt):
                continue
            k = index_of.get(result.prompt_id)
            if k is None:
                self.unmatched_results += 1
                continue
            instance, value = instance_ground_truth(gt, k, len(prompts))
            box = prompts[k - 1].box
            if has_mask:
                iou_crop, iou_full, box_iou, box_full = score_result(
                    result, box, instance, (width, height), self.postprocess, clip_box=result.box
                )
            else:  # no mask on this frame: what a consumer gets is nothing
                iou_crop = iou_full = 0.0 if instance.any() else 1.0
                box_iou, box_full = box_baseline(box, instance, (width, height))
            area = int(instance.sum())
            score = InstanceScore(
                index, stamp, result.prompt_id, value, area, iou_crop, iou_full, box_iou, box_full
            )
            if result.crop is not None:
                score.crowding = objects_in_crop(result.crop, [p.box for p in prompts], k - 1)
            papers = [r for r in papers_results or () if r.prompt_id == result.prompt_id]
            if papers and papers[0].status == Status.OK:
                score.papers_iou_crop, score.papers_iou_full, _, _ = score_result(
                    papers[0], box, instance, (width, height), self.postprocess, border="cut"
                )
            self.instances.append(score)
        if overlay and len(self.overlays) < max_overlays:
            self.overlays.append(
                OverlaySample(
                    index,
                    stamp,
                    frame_rgb,
                    compose_frame_mask([r for r, _ in results], (width, height)),
                    gt,
                    [p.box for p in prompts],
                )
            )

    def summary(self) -> dict:
        """The JSON report (without per-instance detail)."""
        ious_crop = [s.iou_crop for s in self.instances]
        ious_full = [s.iou_full for s in self.instances]
        latency = np.asarray(self.frame_latency_ms, dtype=np.float64)

        def pct(q: float) -> float | None:
            return round(float(np.percentile(latency, q)), 3) if latency.size else None

        by_size: dict[str, list[float]] = {"small": [], "medium": [], "large": []}
        for s in self.instances:
            by_size[size_bucket(s.gt_area)].append(s.iou_crop)

        def sized(field_name: str) -> dict[str, float | None]:
            buckets: dict[str, list[float]] = {"small": [], "medium": [], "large": []}
            for s in self.instances:
                buckets[size_bucket(s.gt_area)].append(getattr(s, field_name))
            return {k: _nan_to_none(mean_iou(v)) for k, v in buckets.items()}

        def crowded(field_name: str) -> dict[str, float | None]:
            buckets: dict[str, list[float]] = {b: [] for b in CROWDING_BUCKETS}
            for s in self.instances:
                buckets[crowding_bucket(s.crowding)].append(getattr(s, field_name))
            return {k: _nan_to_none(mean_iou(v)) for k, v in buckets.items()}

        def overall(field_name: str) -> float | None:
            return _nan_to_none(mean_iou(getattr(s, field_name) for s in self.instances))
        if self.mode == "run":
            throughput = self.frames_with_prompts / self.processing_s if self.processing_s > 0 else None
        else:
            throughput = self.frames_with_prompts / self.bag_duration_s if self.bag_duration_s > 0 else None
        return {
            "mode": self.mode,
            "backend": self.backend,
            "bag": self.bag,
            "topics": self.topics,
            "frames": self.frames,
            "frames_with_prompts": self.frames_with_prompts,
            "frames_with_ground_truth": self.frames_with_ground_truth,
            "prompts": self.prompts,
            "prompt_messages": self.prompt_messages,
            "prompt_messages_used": self.prompt_messages_used,
            "prompt_every": self.prompt_every,
            "follow": self.follow,
            "scored": "every prompt in effect on every frame with ground truth (no mask: IoU 0; a NOT_SERVED "
            "entry carrying its last mask: that mask)" if self.score_every_prompt
            else "OK results on frames with ground truth",
            "bad_frames": self.bad_frames,
            "bad_frame_reason": self.bad_frame_reason,
            "instances": len(self.instances),
            "miou_crop": _nan_to_none(mean_iou(ious_crop)),
            "miou_full": _nan_to_none(mean_iou(ious_full)),
            "miou_crop_box_baseline": _nan_to_none(mean_iou(s.box_iou_crop for s in self.instances)),
            "mean_fraction_above_iou_50_95_crop": _nan_to_none(mean_fraction_above_iou_thresholds(ious_crop)),
            "miou_crop_by_size": {k: _nan_to_none(mean_iou(v)) for k, v in by_size.items()},
            "miou_full_by_size": sized("iou_full"),
            "instances_by_size": {k: len(v) for k, v in by_size.items()},
            "miou_full_by_crowding": crowded("iou_full"),
            "box_baseline_full_by_crowding": crowded("box_iou_full"),
            "instances_by_crowding": {b: sum(crowding_bucket(s.crowding) == b for s in self.instances)
                                      for b in CROWDING_BUCKETS},
            "crowding_rule": "other prompts in effect with at least half their box inside this prompt's crop",
            "miou_full_box_baseline": overall("box_iou_full"),
            "box_baseline_by_size": {"crop": sized("box_iou_crop"), "full": sized("box_iou_full")},
            "box_baseline_rule": "the prompt box as the mask: frame pixels whose centre lies inside the box; "
            "in crop space taken through the crop rule like the ground truth",
            "papers": {
                "what": "the papers' crop rule (square cut at the frame border); the fields above use the "
                "node's (shrunk symmetrically)",
                "miou_crop": overall("papers_iou_crop"),
                "miou_full": overall("papers_iou_full"),
                "miou_crop_by_size": sized("papers_iou_crop"),
                "miou_full_by_size": sized("papers_iou_full"),
            }
            if any(s.papers_iou_full == s.papers_iou_full for s in self.instances)
            else None,
            "postprocess": self.postprocess.as_dict() if self.postprocess else None,
            "boxes": f"each side moved by N(0, {self.box_jitter:g}) of the box size (seed {self.seed})"
            if self.box_jitter > 0
            else "as recorded",
            "status_counts": dict(sorted(self.status_counts.items())),
            "unmatched_results": self.unmatched_results,
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "mean": round(float(latency.mean()), 3) if latency.size else None,
                "max": round(float(latency.max()), 3) if latency.size else None,
                "what": "per frame: pipeline call (crop, network, paste-back)"
                if self.mode == "run"
                else "per result: Segmentation.latency_ms as published by the node",
            },
            "throughput_fps": round(throughput, 3) if throughput else None,
            "throughput_what": "frames with prompts per second of processing"
            if self.mode == "run"
            else "frames with results per second of bag time",
        }

    def instance_rows(self) -> list[dict]:
        return [
            {
                "frame": s.frame_index,
                "stamp_ns": s.stamp_ns,
                "prompt_id": s.prompt_id,
                "gt_value": s.gt_value,
                "gt_area": s.gt_area,
                "iou_crop": round(s.iou_crop, 6),
                "iou_full": round(s.iou_full, 6),
                "box_iou_crop": round(s.box_iou_crop, 6),
                "box_iou_full": round(s.box_iou_full, 6),
            }
            for s in self.instances
        ]


def _nan_to_none(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


# --------------------------------------------------------------------------- scoring


def instance_ground_truth(gt: np.ndarray, k: int, n_prompts: int) -> tuple[np.ndarray, int]:
    """The k-th (1-based) prompt's instance in a ground-truth label image, and the value used.

    One prompt in effect: any non-zero pixel is the object (value 0 reported).
    """
    if n_prompts == 1:
        return gt != 0, 0
    value = min(k, 255)
    return gt == value, value


def score_result(
    result: PromptResult,
    box: Sequence[float],
    gt_instance: np.ndarray,
    frame_size: tuple[int, int],
    postprocess: Postprocess | None = None,
    border: str = "shrink",
    clip_box: Sequence[float] | None = None,
) -> tuple[float, float, float, float]:
    """(iou_crop, iou_full, box_iou_crop, box_iou_full) of one OK result against its instance.

    With logits and ``postprocess``, crop space scores the post-processed mask on the
    network's grid (clipped to ``clip_box``, the box the mask was made for, default ``box``);
    with logits alone, ``logits > 0``; recorded results (no logits) bring their crop-local
    mask to the grid (above half: the node's 0/255). The box baseline is ``box`` under the crop
    rule ``border``. Both IoUs come from the one instance scorer (``metrics.score_instance``)."""
    rect: CropRect = result.crop
    size = MODEL_INPUT_SIZE if result.logits96 is None else int(result.logits96.shape[-1])
    if result.logits96 is not None:
        post = postprocess if postprocess is not None else RAW_POSTPROCESS
        clip = box if clip_box is None else clip_box
        grid = grid_mask(result.logits96, rect, post.threshold, clip, post.box_margin, post.grow_threshold)
    else:  # recorded results carry the crop-local mask only: bring it to the network's grid
        grid = cv2.resize(result.crop_mask, (size, size), interpolation=cv2.INTER_NEAREST) > 127
    truth = InstanceTruth.cut(gt_instance, rect, size)
    iou_crop, iou_full = score_instance(truth, grid, result.crop_mask > 0)
    box_iou, box_full = box_baseline(box, gt_instance, frame_size, border, size)
    return iou_crop, iou_full, box_iou, box_full


def box_baseline(
    box: Sequence[float], gt_instance: np.ndarray, frame_size: tuple[int, int], border: str = "shrink",
    size: int = MODEL_INPUT_SIZE,
) -> tuple[float, float]:
    """(crop space, full frame) IoU of the box itself used as the mask, on the prompt's own crop
    (the crop the pipeline would use); NaN for a box the crop rule refuses."""
    width, height = frame_size
    try:
        box_rect = crop_rect_for_box(box, frame_size, border=border)
        box_iou = mask_iou(box_mask_in_crop(box, box_rect, size), gt_crop(gt_instance, box_rect, size))
        box_full = mask_iou(box_mask_in_rect(box, CropRect(0, 0, width, height)), gt_instance)
    except InvalidRoiError:
        return float("nan"), float("nan")
    return box_iou, box_full


def jittered_prompts(
    prompts: Sequence[BagPrompt], fraction: float, seed: int, frame_index: int
) -> list[BagPrompt]:
    """Detector-like boxes for one frame (see the module docstring); whole pixels, >= 1 px."""
    out = []
    for p in prompts:
        left, top, w, h = jitter_box(p.box, fraction, np.random.default_rng([seed, frame_index, p.id]))
        x, y = round(left), round(top)
        out.append(BagPrompt(p.id, (x, y, max(1, round(left + w) - x), max(1, round(top + h) - y)), p.follow))
    return out


# --------------------------------------------------------------------------- bag walking


@dataclass
class _Topics:
    image: str
    prompt: str
    prompt_type: str
    gt: str | None
    segmentations: str | None

    def as_dict(self) -> dict[str, str | None]:
        """The report's "topics" block."""
        return {"image": self.image, "prompt": self.prompt, "ground_truth": self.gt,
                "segmentations": self.segmentations}


def _resolve_topics(
    reader: BagReader,
    image_topic: str,
    prompt_topic: str,
    gt_topic: str | None,
    segmentations_topic: str | None,
) -> _Topics:
    image = reader.resolve_topic(image_topic, FRAME_TYPES, "image")
    prompt = reader.resolve_topic(prompt_topic, [ROI_TYPE, PROMPT_ARRAY_TYPE], "prompt")
    gt = reader.resolve_topic(gt_topic, [IMAGE_TYPE], "ground-truth") if gt_topic else None
    seg = (
        reader.resolve_topic(segmentations_topic, [SEGMENTATION_ARRAY_TYPE], "segmentations")
        if segmentations_topic
        else None
    )
    if reader.message_count(image) == 0:
        raise BagError(f"image topic '{image}' has no messages")
    return _Topics(image, prompt, reader.topics()[prompt], gt, seg)


def _read_ground_truth(reader: BagReader, topic: str | None) -> dict[int, np.ndarray]:
    if topic is None:
        return {}
    truth = {}
    for item in reader.messages([topic]):
        if item.msg.encoding != "mono8":
            raise BagError(
                f"ground-truth topic '{topic}' has encoding '{item.msg.encoding}'; it must be mono8"
            )
        truth[stamp_ns(item.msg.header)] = label_array(item.msg)
    return truth


def results_from_segmentations(msg) -> list[tuple[PromptResult, str]]:
    """PromptResults (crop mask, no logits) from a recorded SegmentationArray."""
    results = []
    for seg in msg.segmentations:
        status = Status(int(seg.status)) if int(seg.status) in Status._value2member_map_ else None
        result = PromptResult(
            int(seg.prompt_id),
            status if status is not None else Status.BACKEND_ERROR,
            backend=str(seg.backend),
            latency_ms=float(seg.latency_ms),
            score=float(seg.score),
        )
        if result.status == Status.OK:
            rect = CropRect(
                int(seg.crop.x_offset), int(seg.crop.y_offset), int(seg.crop.width), int(seg.crop.height)
            )
            mask = label_array(seg.mask)
            if rect.width <= 0 or rect.height <= 0 or mask.shape != (rect.height, rect.width):
                result.status = Status.BACKEND_ERROR
                result.detail = f"recorded mask {mask.shape} does not match its crop {rect}"
            else:
                result.crop, result.crop_mask = rect, mask
        results.append((result, str(Status(result.status).name)))
    return results


FrameSegmenter = Callable[[np.ndarray, list[Prompt]], list[PromptResult]]


class PromptThinning:
    """``--prompt-every N``: which prompt messages a slow detector would have sent.

    A message is kept when it is the Nth since the last kept one, or when its prompt ids differ
    from the last kept message's (a new object, or one gone: a detector reports those at once).
    N = 0 keeps only those, so a bag with a box on every frame and a new id per video gives the
    first frame's box of each video only.
    """

    def __init__(self, every: int):
        if every < 0:
            raise ValueError(f"--prompt-every must be >= 0, got {every}")
        self.every = int(every)
        self._ids: list[int] | None = None
        self._since = 0

    def keep(self, prompts: Sequence[BagPrompt]) -> bool:
        ids = [p.id for p in prompts]
        self._since += 1
        if ids != self._ids or (self.every and self._since >= self.every):
            self._ids, self._since = ids, 0
            return True
        return False


def _read_recorded(reader: BagReader, topic: str | None) -> tuple[dict[int, list], list[int]]:
    """A node's recorded ``segmentations`` by frame stamp, and their log times."""
    recorded: dict[int, list[tuple[PromptResult, str]]] = {}
    times: list[int] = []
    if topic:
        for item in reader.messages([topic]):
            recorded[stamp_ns(item.msg.header)] = results_from_segmentations(item.msg)
            times.append(item.log_time_ns)
    return recorded, times


def _frame_results(evaluation: Evaluation, segment: FrameSegmenter | None,
                   papers_segment: FrameSegmenter | None, frame_rgb: np.ndarray, prompts: list[Prompt],
                   recorded: list | None):
    """(results, papers results) of one frame: the pipeline run on it (timed), or what the node
    recorded for it; None when it recorded nothing."""
    if segment is None:
        if recorded is None:
            return None
        evaluation.frame_latency_ms.extend(r.latency_ms for r, _ in recorded if r.status == Status.OK)
        return recorded, None
    started = time.perf_counter()
    results = [(r, Status(r.status).name) for r in segment(frame_rgb, prompts)]
    elapsed = time.perf_counter() - started
    evaluation.processing_s += elapsed
    evaluation.frame_latency_ms.append(elapsed * 1e3)
    return results, None if papers_segment is None else papers_segment(frame_rgb, prompts)


def evaluate_bag(
    bag: Path | str,
    image_topic: str,
    prompt_topic: str,
    gt_topic: str | None = None,
    segment: FrameSegmenter | None = None,
    backend_name: str = "",
    segmentations_topic: str | None = None,
    max_overlays: int = MAX_OVERLAYS,
    progress: Callable[[int, int], None] | None = None,
    postprocess: Postprocess | None = None,
    papers_segment: FrameSegmenter | None = None,
    box_jitter: float = 0.0,
    seed: int = 0,
    prompt_every: int | None = None,
    follow: dict | None = None,
) -> Evaluation:
    """Evaluate a bag: run ``segment`` on every frame with prompts, or score recorded segmentations.

    ``segment(frame_rgb, prompts) -> results`` is the node's pipeline bound to a
    backend (``picosam3_ros.core.predictor.Predictor.segment``, or the frame server's) applying
    ``postprocess``; ``papers_segment`` the
    same under the papers' crop rule. Pass ``segmentations_topic`` instead to score what a
    node recorded. ``box_jitter`` > 0 moves the prompt boxes (run mode).

    ``prompt_every`` N (run mode): only every Nth prompt message reaches the pipeline, a slow
    detector (:class:`PromptThinning`). ``follow`` (run mode, ``segment`` follows): every prompt in
    effect is scored on every frame with ground truth (:attr:`Evaluation.score_every_prompt`), and
    a jittered box (``box_jitter``) is drawn once per prompt message, as a detector's would be,
    not once per frame.
    """
    if (segment is None) == (segmentations_topic is None):
        raise ValueError("give exactly one of segment and segmentations_topic")
    if segment is None and (prompt_every is not None or follow is not None):
        raise ValueError("prompt_every and follow need a segment function (run mode)")
    with BagReader(bag) as reader:
        topics = _resolve_topics(reader, image_topic, prompt_topic, gt_topic, segmentations_topic)
        evaluation = Evaluation(
            "run" if segment is not None else "recorded", backend_name, str(reader.path), topics.as_dict(),
            postprocess=postprocess if segment is not None else None, box_jitter=box_jitter, seed=seed,
            score_every_prompt=follow is not None, follow=follow, prompt_every=prompt_every,
        )
        thinning = PromptThinning(prompt_every) if prompt_every is not None else None
        truth = _read_ground_truth(reader, topics.gt)
        recorded, recorded_times = _read_recorded(reader, topics.segmentations)
        total_frames = reader.message_count(topics.image)
        overlay_every = max(1, total_frames // max(1, max_overlays)) if max_overlays else 0
        prompts: list[BagPrompt] = []
        read_frames = 0  # frames converted (the others are counted in bad_frames)
        for item in reader.messages([topics.prompt, topics.image]):
            if item.topic == topics.prompt:
                given = prompts_from_msg(item.msg, item.msgtype)
                evaluation.prompt_messages += 1
                if thinning is not None and not thinning.keep(given):
                    continue
                evaluation.prompt_messages_used += 1
                prompts = given
                if follow is not None and box_jitter > 0:  # one draw per message: a detection
                    prompts = jittered_prompts(given, box_jitter, seed, evaluation.prompt_messages)
                continue
            index = evaluation.frames
            evaluation.frames += 1
            if progress:
                progress(evaluation.frames, total_frames)
            stamp = stamp_ns(item.msg.header)
            if not prompts:
                continue
            try:  # the node's conversion and payload guard: what it drops is skipped and counted
                frame_rgb = frame_to_rgb(item.msg)
            except BagError as exc:
                evaluation.bad_frames += 1
                evaluation.bad_frame_reason = evaluation.bad_frame_reason or f"frame {index}: {exc}"
                continue
            read_frames += 1
            frame_prompts = prompts
            if box_jitter > 0 and follow is None:
                frame_prompts = jittered_prompts(prompts, box_jitter, seed, index)
            node_prompts = [Prompt(p.id, tuple(float(v) for v in p.box), item.log_time_ns, follow=p.follow)
                            for p in frame_prompts]
            papers = papers_segment if stamp in truth else None  # only scored frames need it
            served = _frame_results(evaluation, segment, papers, frame_rgb, node_prompts, recorded.get(stamp))
            if served is None:
                continue  # the node published nothing for this frame (dropped, or not recorded)
            results, papers_results = served
            evaluation.add_frame(index, stamp, item.log_time_ns, frame_rgb, frame_prompts, results,
                                 truth.get(stamp), overlay=bool(overlay_every) and index % overlay_every == 0,
                                 max_overlays=max_overlays, papers_results=papers_results)
        if topics.segmentations and len(recorded_times) > 1:
            evaluation.bag_duration_s = (max(recorded_times) - min(recorded_times)) / 1e9
    if evaluation.bad_frames and not read_frames:  # the topic is unreadable (a depth topic, say)
        raise BagError(f"no frame of {topics.image} could be read: {evaluation.bad_frame_reason}")
    return evaluation
