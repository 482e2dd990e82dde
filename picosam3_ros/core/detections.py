"""Detector output -> box prompts (ROS-free): read, filter, rank, give stable ids.

Two message layouts are read by their fields (duck typing, so neither package is needed
to import this module, and a test package with the same fields works the same):

* ``vision_msgs/Detection2DArray`` (what Isaac ROS and most detectors publish):
  ``detections[].bbox.center.position.x/y`` (box centre, px), ``bbox.size_x/size_y``,
  ``results[].hypothesis.class_id/score``, ``id`` (tracking id, may be empty);
* ``yolo_msgs/DetectionArray`` (yolo_ros): ``detections[].bbox.center.position.x/y``,
  ``bbox.size.x/y``, ``class_name`` (and ``class_id``), ``score``, ``id``.

Prompt ids: a detection with a tracking id keeps the same prompt id for as long as the
track lives (:class:`TrackIds`), so the sensor node's per-prompt state (ROI scheduling,
carried masks) follows the object. Without tracking ids the ids are the ranks 1..k in
the message, which are not stable across frames.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

MAX_PROMPT_ID = 0xFFFFFFFF


@dataclass(frozen=True)
class Detection:
    box_xywh: tuple[float, float, float, float]  # top-left x, y, width, height (px)
    class_id: str
    score: float
    track_id: str = ""


@dataclass(frozen=True)
class DetectionFilter:
    """Which detections become prompts: classes ('' entries ignored; empty = every class),
    a minimum score, and the top ``top_k`` by score (0 = all)."""

    classes: tuple[str, ...] = ()
    min_score: float = 0.0
    top_k: int = 0

    @staticmethod
    def parse_classes(text: str) -> tuple[str, ...]:
        """'person, cup' -> ('person', 'cup')."""
        return tuple(c.strip() for c in text.split(",") if c.strip())


def _best_hypothesis(results: Iterable[Any], classes: Sequence[str]) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for result in results:
        hypothesis = getattr(result, "hypothesis", result)  # vision_msgs 3 had the fields inline
        class_id, score = str(hypothesis.class_id), float(hypothesis.score)
        if classes and class_id not in classes:
            continue
        if best is None or score > best[1]:
            best = (class_id, score)
    return best


def read_detections(msg: Any, classes: Sequence[str] = ()) -> list[Detection]:
    """The detections of a Detection2DArray- or yolo DetectionArray-like message.

    Detections with a non-finite or non-positive box, or (for vision_msgs) no hypothesis
    of an allowed class, are left out.
    """
    out: list[Detection] = []
    for det in msg.detections:
        bbox = det.bbox
        cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
        if hasattr(bbox, "size_x"):
            width, height = float(bbox.size_x), float(bbox.size_y)
            best = _best_hypothesis(det.results, classes)
            if best is None:
                continue
            class_id, score = best
        else:
            width, height = float(bbox.size.x), float(bbox.size.y)
            class_id, score = str(getattr(det, "class_name", "") or det.class_id), float(det.score)
            if classes and class_id not in classes and str(det.class_id) not in classes:
                continue
        if not all(math.isfinite(v) for v in (cx, cy, width, height)) or width <= 0 or height <= 0:
            continue
        box = (cx - width / 2.0, cy - height / 2.0, width, height)
        out.append(Detection(box, class_id, score, str(getattr(det, "id", "") or "")))
    return out


def select(detections: Sequence[Detection], rule: DetectionFilter) -> list[Detection]:
    """Score threshold, then the best ``top_k`` by score (stable for equal scores)."""
    kept = [d for d in detections if d.score >= rule.min_score]
    kept.sort(key=lambda d: -d.score)
    return kept[: rule.top_k] if rule.top_k > 0 else kept


class TrackIds:
    """Tracking id (string) -> prompt id (uint32), stable while the track is seen; bounded memory."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._next = 1

    def prompt_id(self, track_id: str) -> int:
        if track_id in self._ids:
            self._ids.move_to_end(track_id)
            return self._ids[track_id]
        prompt_id = self._next
        self._next = self._next + 1 if self._next < MAX_PROMPT_ID else 1
        self._ids[track_id] = prompt_id
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return prompt_id


Box = tuple[int, int, int, int]


def to_prompts(detections: Sequence[Detection], tracks: TrackIds) -> list[tuple[int, Box]]:
    """(prompt id, integer box) per detection: track ids kept stable, else ranks 1..k.

    Boxes are rounded outwards to whole pixels and clipped at 0 (RegionOfInterest is unsigned);
    the sensor node clips them to the frame.
    """
    prompts = []
    used: set[int] = set()
    for rank, det in enumerate(detections, start=1):
        prompt_id = tracks.prompt_id(det.track_id) if det.track_id else rank
        if prompt_id in used:  # a rank colliding with a track's id: take the next free one
            prompt_id = max(used) + 1
        used.add(prompt_id)
        x, y, w, h = det.box_xywh
        left, top = max(0, math.floor(x)), max(0, math.floor(y))
        right, bottom = math.ceil(x + w), math.ceil(y + h)
        prompts.append((prompt_id, (left, top, max(0, right - left), max(0, bottom - top))))
    return prompts
