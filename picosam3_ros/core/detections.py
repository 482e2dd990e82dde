"""Detector output -> box prompts (ROS-free): read, filter, rank, give stable ids.

Two message layouts are read by their fields (duck typing, so neither package is needed
to import this module, and a test package with the same fields works the same):

* ``vision_msgs/Detection2DArray`` (what Isaac ROS and most detectors publish):
  ``detections[].bbox.center.position.x/y`` (box centre, px), ``bbox.size_x/size_y``,
  ``results[].hypothesis.class_id/score``, ``id`` (tracking id, may be empty);
* ``yolo_msgs/DetectionArray`` (yolo_ros): ``detections[].bbox.center.position.x/y``,
  ``bbox.size.x/y``, ``class_name`` (and ``class_id``), ``score``, ``id``.

Every number is checked before it becomes a prompt (a detector's message must never stop
the adapter): the box centre and size must be finite, the size above zero and everything
within ``max_coordinate`` pixels (no camera frame is that large; 1e300 or 2^40 used to raise
or wrap, and a width of 1e10 became a whole-frame prompt), the score finite; a box that
lies wholly left of or above the frame is dropped too. What is dropped is counted by reason
(:class:`Dropped`).

Prompt ids: a detection with a tracking id keeps the same prompt id for as long as the
track lives (:class:`TrackIds`, ids from :data:`TRACK_ID_BASE` up, so they never collide
with the ranks), so the sensor node's per-prompt state (ROI scheduling, carried masks)
follows the object; a second detection with the same track id in one message is dropped.
Without tracking ids the ids are the ranks 1..k in the message, which are not stable
across frames. Track ids longer than :data:`MAX_TRACK_ID_LENGTH` are kept as a digest, and
at most ``capacity`` tracks are remembered: the memory is bounded whatever the ids.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

MAX_PROMPT_ID = 0xFFFFFFFF
DEFAULT_MAX_COORDINATE = 16384.0  # px: above any camera frame (the IMX500's is 4056x3040, 8K video 7680)
TRACK_ID_BASE = 1 << 16  # track prompt ids start here; ranks (at most 65535) stay below
MAX_TRACK_ID_LENGTH = 64  # characters kept as they are; longer ids become a digest


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


def _number(value: Any) -> float:
    """A field as a float; NaN for what is none (an integer beyond float, a string)."""
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return math.nan


def _best_hypothesis(results: Iterable[Any], classes: Sequence[str]) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for result in results:
        hypothesis = getattr(result, "hypothesis", result)  # vision_msgs 3 had the fields inline
        class_id, score = str(hypothesis.class_id), _number(hypothesis.score)
        if classes and class_id not in classes:
            continue
        if not math.isfinite(score) and best is not None:
            continue  # a finite score wins over NaN; a class with only NaN scores is dropped later
        if best is None or score > best[1] or not math.isfinite(best[1]):
            best = (class_id, score)
    return best


class Dropped(Counter):
    """Detections left out of a message, by reason ("not finite", "zero size", ...)."""

    def line(self) -> str:
        return ", ".join(f"{count} {reason}" for reason, count in self.most_common())


def _box_problem(cx: float, cy: float, width: float, height: float, score: float, bound: float) -> str | None:
    if not all(math.isfinite(v) for v in (cx, cy, width, height, score)):
        return "not finite"
    if width <= 0 or height <= 0:
        return "zero size"
    if max(abs(cx), abs(cy), width, height) > bound:
        return f"beyond {bound:g} px"
    if cx + width / 2.0 <= 0 or cy + height / 2.0 <= 0:
        return "outside the frame"
    return None


def read_detections(msg: Any, classes: Sequence[str] = (), dropped: Dropped | None = None,
                    max_coordinate: float = DEFAULT_MAX_COORDINATE) -> list[Detection]:
    """The detections of a Detection2DArray- or yolo DetectionArray-like message.

    Detections of no allowed class (for vision_msgs: no hypothesis of one) are left out; those
    whose numbers fail the checks (module doc) are left out and counted in ``dropped``.
    """
    out: list[Detection] = []
    for det in msg.detections:
        bbox = det.bbox
        cx, cy = _number(bbox.center.position.x), _number(bbox.center.position.y)
        if hasattr(bbox, "size_x"):
            width, height = _number(bbox.size_x), _number(bbox.size_y)
            best = _best_hypothesis(det.results, classes)
            if best is None:
                continue
            class_id, score = best
        else:
            width, height = _number(bbox.size.x), _number(bbox.size.y)
            class_id, score = str(getattr(det, "class_name", "") or det.class_id), _number(det.score)
            if classes and class_id not in classes and str(det.class_id) not in classes:
                continue
        problem = _box_problem(cx, cy, width, height, score, max_coordinate)
        if problem is not None:
            if dropped is not None:
                dropped[problem] += 1
            continue
        box = (cx - width / 2.0, cy - height / 2.0, width, height)
        out.append(Detection(box, class_id, score, str(getattr(det, "id", "") or "")))
    return out


def select(detections: Sequence[Detection], rule: DetectionFilter) -> list[Detection]:
    """Score threshold, then the best ``top_k`` by score (stable for equal scores): a heap of
    k, not a sort of the whole message."""
    kept = [d for d in detections if d.score >= rule.min_score]
    if rule.top_k > 0:
        return heapq.nsmallest(rule.top_k, kept, key=lambda d: -d.score)
    return sorted(kept, key=lambda d: -d.score)


class TrackIds:
    """Tracking id (string) -> prompt id (uint32 from TRACK_ID_BASE up), stable while the track
    is seen; bounded memory (``capacity`` tracks, long ids as digests)."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._in_use: set[int] = set()
        self._next = TRACK_ID_BASE

    @staticmethod
    def key(track_id: str) -> str:
        if len(track_id) <= MAX_TRACK_ID_LENGTH:
            return track_id
        return "#" + hashlib.sha1(track_id.encode("utf-8", "surrogatepass")).hexdigest()

    def prompt_id(self, track_id: str) -> int:
        key = self.key(track_id)
        if key in self._ids:
            self._ids.move_to_end(key)
            return self._ids[key]
        prompt_id = self._next
        while prompt_id in self._in_use:  # only after 2^32 ids: never reuse a live track's
            prompt_id = prompt_id + 1 if prompt_id < MAX_PROMPT_ID else TRACK_ID_BASE
        self._next = prompt_id + 1 if prompt_id < MAX_PROMPT_ID else TRACK_ID_BASE
        self._ids[key] = prompt_id
        self._in_use.add(prompt_id)
        while len(self._ids) > self.capacity:
            self._in_use.discard(self._ids.popitem(last=False)[1])
        return prompt_id


Box = tuple[int, int, int, int]


def to_prompts(detections: Sequence[Detection], tracks: TrackIds,
               dropped: Dropped | None = None) -> list[tuple[int, Box]]:
    """(prompt id, integer box) per detection: track ids kept stable, else ranks 1..k.

    Boxes (checked by :func:`read_detections`) are rounded outwards to whole pixels and
    clipped at 0 (RegionOfInterest is unsigned); the sensor node clips them to the frame. A
    second detection with a track id already in this message is dropped (counted): two
    prompts with one id would be a malformed set, and renumbering it made ids change.
    """
    prompts = []
    seen: set[str] = set()
    for rank, det in enumerate(detections, start=1):
        if det.track_id:
            key = tracks.key(det.track_id)
            if key in seen:
                if dropped is not None:
                    dropped["duplicate track id"] += 1
                continue
            seen.add(key)
            prompt_id = tracks.prompt_id(det.track_id)
        else:
            prompt_id = rank  # < TRACK_ID_BASE: a message holds fewer detections than that
        x, y, w, h = det.box_xywh
        left, top = max(0, math.floor(x)), max(0, math.floor(y))
        right, bottom = math.ceil(x + w), math.ceil(y + h)
        prompts.append((prompt_id, (left, top, right - left, bottom - top)))
    return prompts
