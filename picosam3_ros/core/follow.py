"""Following: each followed prompt's box moves with its object, from the masks the node computes (ROS-free).

A box given once (an operator's drag) or now and then (a detector at a few Hz) goes stale as
soon as the object moves, and a stale box gives a worse mask than no box at all would suggest:
the network segments what is near the centre of its crop. One :class:`BoxFollower` per followed
prompt keeps the box on the object; :class:`Followers` holds them for a node, a frame server
or a bag evaluation (the same code on every path).

Per frame (``Followers.prepare`` / ``observe`` / ``finish``):

1. **Motion** (:class:`MotionFrame`, once per frame for all prompts): the box moves by the
   median optical flow (pyramidal Lucas-Kanade, forward-backward checked) of points inside the
   prompt's last mask, and scales by the median ratio of their pairwise distances. Without
   credible flow it moves by its velocity (the smoothed flow).
2. **The box to segment** (:meth:`BoxFollower.box_for`): the state extrapolated to the frame the
   box is for. The CPU path segments this frame; the sensor path writes an ROI that takes effect
   ``roi_apply_delay_frames + 1`` frames after the frame it was written on, so it predicts that
   far ahead (the frame server passes the target frame number).
3. **Correction from the mask** (:meth:`BoxFollower.observe`), with the box the mask was made
   for. The tight box of the (box-clipped) mask can only shrink, and it lags: for an off-centre
   box the network segments what is near the crop centre. So the measurement uses the
   network's whole-crop mask (the logits above the threshold on the 96x96 grid, not clipped):
   its centroid plus the centroid-to-box offset calibrated on the given box gives the centre,
   and the square root of its area over the calibrated area gives the size. The centroid still
   leans towards the crop centre (on DAVIS a shifted box keeps ~45% of its error), so the
   centre correction has a gain (``centre_gain``) and the size follows slowly and in bounded
   steps (``scale_gain``, ``max_scale_step``). A mask whose area jumps (``area_gate``: a leak
   into the background, an occluder) corrects nothing.
4. **Second pass** (CPU path, ``second_pass``, off by default): the frame is segmented again on
   the corrected box, and that mask is the result; its box is the one ``Segmentation.box`` reports.
5. **LOST** (``lost_after``): after that many frames in a row without a credible object (no
   mask, or one under ``lost_area_fraction`` of the calibrated area, or the box left the frame)
   the prompt is LOST: it is not segmented and reports status LOST until a new box arrives.

New boxes for a prompt id (``Followers.prepare``): a box equal to the last one given for that id
is a keep-alive (publishers repeat their sets, e.g. every second) and changes nothing. A changed
box is a detection or a new drag and wins: the follower restarts on it. When it overlaps the
followed box (``SAME_OBJECT_IOU``) the velocity is kept (the same object, corrected), else it is
reset. Either way the calibration is redone on the new box's first mask, and that frame's
result is the first pass on the given box itself (no second pass).

Measured on DAVIS 2016 at full rate (docs/following.md has the table, the split and what each
idea bought). Settings were chosen on half of the sequences.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.metrics import box_iou
from picosam3_ros.core.postprocess import logit_threshold

# RoiPrompt.follow (mirrors picosam3_msgs/RoiPrompt): the node's `follow` parameter, or per prompt.
FOLLOW_DEFAULT = 0
FOLLOW = 1
FIXED = 2
FOLLOW_MODES = (FOLLOW_DEFAULT, FOLLOW, FIXED)

# A new box overlapping the followed one at least this much is the same object, corrected.
SAME_OBJECT_IOU = 0.3
# Sensor ROIs a follower remembers giving out: a sensor output made for one of them is its own
# (the ROI was written a few frames before the output; far more than any apply delay).
ISSUED_BOXES = 32

Box = tuple[float, float, float, float]  # (x, y, width, height), frame pixels


@dataclass(frozen=True)
class FollowSettings:
    """How a follower moves its box (defaults chosen on half of DAVIS 2016; docs/following.md).

    centre_gain: how far the centre moves towards the mask's (calibrated) centroid, as a multiple
        of the offset between the two (1 = all the way).
    scale_gain: exponent of the size correction towards the mask's area-based size (0 = flow only).
    max_scale_step: the flow scales the box by at most this factor per frame, and the mask's size
        ratio is clipped to it before ``scale_gain`` applies.
    area_gate: (low, high) mask area relative to the last accepted one outside which the mask
        corrects nothing; ``gate_patience`` rejections in a row accept it anyway (a real change).
    second_pass: CPU path: segment again on the corrected box and publish that mask (off: it doubles
        the network's work and bought nothing measurable on the tuning half, docs/following.md).
    lost_after: frames in a row without a credible object before the prompt is LOST (0 = never).
    lost_area_fraction: a mask under this fraction of the calibrated area is not credible.
    min_score_ratio: nor is one whose mean probability is under this fraction of the calibrated one
        (on DAVIS the network's confidence is ~0.85 on objects, ~0.69 on background boxes; a flat
        grey frame gets a blob of ~0.68). The reference is the calibrated confidence, then a moving
        average of the credible frames' (``score_smoothing``: weight of the newest).
    flow_points / flow_window / flow_levels: Lucas-Kanade points per prompt, window (px), pyramid levels.
    flow_max_side: the flow window around the prompt is scaled down to at most this many pixels a side.
    erode_px: the mask is eroded by this much before points are taken from it (edges move with the
        background).
    velocity_smoothing: weight of the newest flow shift in the velocity (exponential average).
    box_core: before a prompt's first mask (a new box waiting for its sensor ROI) the flow points come
        from the middle of the box, this fraction of its size (0 = the box does not move until then).
    """

    centre_gain: float = 1.0
    scale_gain: float = 0.3
    max_scale_step: float = 1.1
    area_gate: tuple[float, float] = (0.7, 1.4)
    gate_patience: int = 5
    second_pass: bool = False
    lost_after: int = 15
    lost_area_fraction: float = 0.05
    min_score_ratio: float = 0.85
    score_smoothing: float = 0.1
    flow_points: int = 60
    flow_window: int = 15
    flow_levels: int = 3
    flow_max_side: int = 160
    erode_px: int = 7
    velocity_smoothing: float = 0.5
    box_core: float = 0.3

    def __post_init__(self) -> None:
        if not self.max_scale_step >= 1.0:
            raise ValueError(f"max_scale_step must be >= 1, got {self.max_scale_step}")
        low, high = self.area_gate
        if not 0.0 < low <= 1.0 <= high:
            raise ValueError(f"area_gate must be (low <= 1 <= high), got {self.area_gate}")
        if self.lost_after < 0:
            raise ValueError(f"lost_after must be >= 0, got {self.lost_after}")


class MotionFrame:
    """One frame's grey image for optical flow, made once and shared by every prompt."""

    def __init__(self, image_rgb: np.ndarray, sequence: int):
        self.gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)
        self.sequence = int(sequence)

    @property
    def size(self) -> tuple[int, int]:
        return self.gray.shape[1], self.gray.shape[0]


@dataclass(frozen=True)
class Motion:
    """The object's motion between two frames: shift (px) of its centre and scale factor."""

    shift: tuple[float, float]
    scale: float
    points: int


def track_points(
    previous: MotionFrame, current: MotionFrame, region: np.ndarray, rect: CropRect, settings: FollowSettings
) -> Motion | None:
    """Median Lucas-Kanade motion of corners inside ``region`` (bool, ``rect``-sized, frame pixels of
    ``rect``) from ``previous`` to ``current``; None when fewer than 4 points survive the
    forward-backward check. The flow runs on a window around ``rect`` only, scaled down so that its
    longer side is at most ``flow_max_side`` px (bounded work, whatever the object's size)."""
    width, height = previous.size
    margin_x, margin_y = rect.width // 2 + 8, rect.height // 2 + 8
    x0, y0 = max(0, rect.x - margin_x), max(0, rect.y - margin_y)
    x1, y1 = min(width, rect.x_end + margin_x), min(height, rect.y_end + margin_y)
    if x1 - x0 < 8 or y1 - y0 < 8 or current.size != previous.size:
        return None
    where = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # The region may poke out of the frame (it moves with the object): paste the part inside.
    left, top = max(rect.x, x0), max(rect.y, y0)
    right, bottom = min(rect.x_end, x1), min(rect.y_end, y1)
    if right <= left or bottom <= top:
        return None
    where[top - y0 : bottom - y0, left - x0 : right - x0] = region[
        top - rect.y : bottom - rect.y, left - rect.x : right - rect.x
    ]
    before = previous.gray[y0:y1, x0:x1]
    after = current.gray[y0:y1, x0:x1]
    scale = min(1.0, settings.flow_max_side / max(x1 - x0, y1 - y0))
    if scale < 1.0:
        size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
        before = cv2.resize(before, size, interpolation=cv2.INTER_AREA)
        after = cv2.resize(after, size, interpolation=cv2.INTER_AREA)
        where = cv2.resize(where, size, interpolation=cv2.INTER_NEAREST)
    corners = cv2.goodFeaturesToTrack(before, settings.flow_points, 0.01, 3, mask=where)
    if corners is None or len(corners) < 4:
        return None
    window = (settings.flow_window, settings.flow_window)
    moved, found, _ = cv2.calcOpticalFlowPyrLK(before, after, corners, None, winSize=window,
                                                maxLevel=settings.flow_levels)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(after, before, moved, None, winSize=window,
                                                    maxLevel=settings.flow_levels)
    ok = (found.ravel() == 1) & (found_back.ravel() == 1)
    if ok.sum() < 4:
        return None
    error = np.linalg.norm((corners - back).reshape(-1, 2), axis=1)
    ok &= error <= max(float(np.median(error[ok])), 1.0 * scale)
    start, end = corners.reshape(-1, 2)[ok], moved.reshape(-1, 2)[ok]
    if len(start) < 4:
        return None
    shift = np.median(end - start, axis=0) / scale
    first, second = np.triu_indices(len(start), 1)
    before_d = np.linalg.norm(start[first] - start[second], axis=1)
    after_d = np.linalg.norm(end[first] - end[second], axis=1)
    spread = before_d > 5.0 * scale
    factor = float(np.median(after_d[spread] / before_d[spread])) if spread.sum() > 3 else 1.0
    return Motion((float(shift[0]), float(shift[1])), factor, int(len(start)))


@dataclass(frozen=True)
class Measurement:
    """What the network's whole-crop mask says: centroid (frame px), area (frame px^2) and its
    mean object probability (the network's confidence; lower on background than on objects)."""

    centroid: tuple[float, float]
    area: float
    score: float


def measure(logits: np.ndarray, crop: CropRect, threshold: float) -> Measurement | None:
    """Centroid, area and mean probability of the unclipped mask (logits above ``threshold`` on the
    network's grid)."""
    logits = np.asarray(logits, np.float32)
    inside = logits > logit_threshold(threshold)
    count = int(inside.sum())
    if count == 0:
        return None
    grid_h, grid_w = inside.shape[-2:]
    rows, cols = np.nonzero(inside)
    sx, sy = crop.width / grid_w, crop.height / grid_h
    centroid = (crop.x + (cols.mean() + 0.5) * sx, crop.y + (rows.mean() + 0.5) * sy)
    score = float(np.mean(1.0 / (1.0 + np.exp(-np.clip(logits[inside], -60.0, 60.0)))))
    return Measurement((float(centroid[0]), float(centroid[1])), count * sx * sy, score)


def _centre_size(box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2.0, y + h / 2.0]), np.array([w, h])


def _as_box(centre: np.ndarray, size: np.ndarray) -> Box:
    left, top = centre - size / 2.0
    return (float(left), float(top), float(size[0]), float(size[1]))


@dataclass
class _Reference:
    offset: np.ndarray  # (box centre - mask centroid) / box size, on the given box
    area: float
    size: np.ndarray
    score: float


class BoxFollower:
    """One prompt's followed box (see the module docstring). Not thread-safe: :class:`Followers` locks."""

    def __init__(self, box: Sequence[float], sequence: int, settings: FollowSettings | None = None):
        self.settings = settings or FollowSettings()
        self.given: Box = tuple(float(v) for v in box)
        self.centre, self.size = _centre_size(self.given)
        self.velocity = np.zeros(2)
        self.sequence = int(sequence)  # the frame the state is for
        self.fresh = True  # the given box has not been segmented yet
        self.misses = 0
        self.lost = False
        self._reference: _Reference | None = None
        self._accepted_area = 0.0
        self._rejected = 0
        self._region: tuple[CropRect, np.ndarray] | None = None  # last published mask, for the flow
        self.issued: deque[Box] = deque(maxlen=ISSUED_BOXES)  # boxes given out for sensor ROIs

    # --- new boxes ---------------------------------------------------------------------------
    def restart(self, box: Sequence[float], sequence: int) -> None:
        """A new box for this prompt: it wins; keep the velocity when it is the same object."""
        same_object = box_iou(self.box(), box) >= SAME_OBJECT_IOU
        self.given = tuple(float(v) for v in box)
        self.centre, self.size = _centre_size(self.given)
        if not same_object:
            self.velocity = np.zeros(2)
            self._region = None
        self.sequence = int(sequence)
        self.fresh = True
        self.misses = 0
        self.lost = False
        self._reference = None
        self.issued.clear()

    # --- per frame ---------------------------------------------------------------------------
    def box(self) -> Box:
        return _as_box(self.centre, self.size)

    def box_for(self, sequence: int) -> Box:
        """The box on frame ``sequence`` (extrapolated with the velocity beyond the state's frame)."""
        ahead = max(0, int(sequence) - self.sequence)
        return _as_box(self.centre + ahead * self.velocity, self.size)

    def advance(self, previous: MotionFrame | None, current: MotionFrame) -> None:
        """Move the state to ``current`` with the object's motion since ``previous``.

        The flow runs from the last published mask; before the first one (a new box on the sensor
        path, waiting for its ROI) the box is only moved by the velocity it kept from a restart.
        The velocity is the smoothed flow alone: the mask's corrections do not feed it, so the
        prediction ahead (sensor ROIs) cannot build up on its own corrections.
        """
        gap = current.sequence - self.sequence
        if gap <= 0 or self.lost:
            return
        motion = None
        region = self._region or self._box_core(current.size)
        if previous is not None and previous.sequence == self.sequence and region is not None:
            motion = track_points(previous, current, region[1], region[0], self.settings)
        if motion is not None:
            step = self.settings.max_scale_step ** gap
            shift = np.array(motion.shift)
            self.centre = self.centre + shift
            self.size = self.size * float(np.clip(motion.scale, 1.0 / step, step))
            self._shift_region(motion)
            self._smooth_velocity(shift / gap)
        else:
            self.centre = self.centre + gap * self.velocity
        self.sequence = current.sequence

    def observe(self, logits: np.ndarray | None, crop: CropRect | None, box_used: Sequence[float],
                threshold: float) -> bool:
        """Correct the state with the mask made for ``box_used`` on the state's frame.

        ``logits``: the network output (S, S) over ``crop``. Returns True when the object was
        credible (a miss otherwise; ``lost_after`` misses in a row: LOST).
        """
        found = None if logits is None or crop is None else measure(logits, crop, threshold)
        if self._reference is None:
            if found is None:
                return self._miss()
            used_centre, used_size = _centre_size(box_used)
            offset = (used_centre - np.array(found.centroid)) / used_size
            self._reference = _Reference(offset, found.area, used_size.copy(), found.score)
            self._accepted_area = found.area
            self.fresh = False
            self.misses = 0
            return True
        reference = self._reference
        if found is None or found.area < self.settings.lost_area_fraction * reference.area:
            return self._miss()
        # A mask the network is unsure of (background gets ~0.69, objects ~0.85) still corrects the
        # box, the object may only be half in it, but counts towards LOST.
        credible = found.score >= self.settings.min_score_ratio * reference.score
        if credible:
            self.misses = 0
            # The reference confidence follows slow changes (a turning object, a lagging box);
            # a sudden drop (the object gone, background in the box) stays below it.
            alpha = self.settings.score_smoothing
            reference.score = (1.0 - alpha) * reference.score + alpha * found.score
        else:
            self._miss()
        low, high = self.settings.area_gate
        ratio = found.area / max(self._accepted_area, 1e-6)
        if not low <= ratio <= high and self._rejected < self.settings.gate_patience:
            self._rejected += 1  # a jump: a leak or an occluder; no correction from this mask
            return credible
        self._rejected = 0
        self._accepted_area = found.area
        used_centre, _ = _centre_size(box_used)
        measured = np.array(found.centroid) + reference.offset * self.size
        self.centre = used_centre + self.settings.centre_gain * (measured - used_centre)
        area_size = reference.size * math.sqrt(found.area / reference.area)
        step = self.settings.max_scale_step
        self.size = self.size * np.clip(area_size / self.size, 1.0 / step, step) ** self.settings.scale_gain
        return credible

    def keep_region(self, crop: CropRect, crop_mask: np.ndarray) -> None:
        """The published mask of this frame: the next frame's flow points come from inside it."""
        inside = np.asarray(crop_mask) > 0
        if self.settings.erode_px > 1:
            kernel = np.ones((self.settings.erode_px, self.settings.erode_px), np.uint8)
            eroded = cv2.erode(inside.astype(np.uint8), kernel).astype(bool)
            if eroded.sum() >= 50:
                inside = eroded
        if inside.sum() >= 20:
            self._region = (crop, inside.astype(np.uint8))

    def mark_unseen(self) -> bool:
        """No usable mask for the prompt on this frame (its box left the frame, a backend error)."""
        return self._miss()

    # --- internals ---------------------------------------------------------------------------
    def _miss(self) -> bool:
        self.misses += 1
        if self.settings.lost_after and self.misses >= self.settings.lost_after:
            self.lost = True
        return False

    def _smooth_velocity(self, displacement: np.ndarray) -> None:
        alpha = self.settings.velocity_smoothing
        self.velocity = alpha * displacement + (1.0 - alpha) * self.velocity

    def _box_core(self, frame_size: tuple[int, int]) -> tuple[CropRect, np.ndarray] | None:
        """Before the first mask: the middle of the box (``box_core`` of its size), where the object
        is likelier than at the border."""
        fraction = self.settings.box_core
        if fraction <= 0:
            return None
        width, height = self.size * fraction
        x0 = int(max(0, self.centre[0] - width / 2))
        y0 = int(max(0, self.centre[1] - height / 2))
        x1 = int(min(frame_size[0], self.centre[0] + width / 2))
        y1 = int(min(frame_size[1], self.centre[1] + height / 2))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        return CropRect(x0, y0, x1 - x0, y1 - y0), np.ones((y1 - y0, x1 - x0), np.uint8)

    def _shift_region(self, motion: Motion) -> None:
        """Move the flow region with the object (whole pixels), so a frame without a mask still tracks."""
        if self._region is None:
            return
        rect, region = self._region
        dx, dy = round(motion.shift[0]), round(motion.shift[1])
        if dx or dy:
            self._region = (CropRect(rect.x + dx, rect.y + dy, rect.width, rect.height), region)


@dataclass
class FollowedPrompt:
    """A prompt's place in a frame: the box to segment (followed or as given) and its follower."""

    prompt_id: int
    box: Box
    follower: BoxFollower | None = None  # None: fixed (the box as given)
    second_pass: bool = False
    lost: bool = False


@dataclass
class Followers:
    """The followers of one node (or evaluation), keyed by prompt id; thread-safe.

    ``default_follow``: what FOLLOW_DEFAULT prompts do (the node's ``follow`` parameter).
    """

    settings: FollowSettings = field(default_factory=FollowSettings)
    default_follow: bool = True
    _followers: dict[int, BoxFollower] = field(default_factory=dict)
    _previous: MotionFrame | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sequence: int = 0

    def wants(self, mode: int) -> bool:
        """True when a prompt with RoiPrompt.follow ``mode`` is followed."""
        return mode == FOLLOW or (mode != FIXED and self.default_follow)

    def any_followed(self, prompts: Sequence) -> bool:
        return any(self.wants(getattr(p, "follow", FOLLOW_DEFAULT)) for p in prompts)

    def next_sequence(self) -> int:
        """A frame number for sources without one (the image topic): frames as they are served."""
        with self._lock:
            self._sequence += 1
            return self._sequence

    def prepare(self, prompts: Sequence, image_rgb: np.ndarray, sequence: int) -> list[FollowedPrompt]:
        """Every prompt's box on this frame (``Prompt``-like: prompt_id, box_xywh, follow).

        Followed prompts get a follower (new id), keep it (same box: a keep-alive), or restart it
        (a changed box); every follower is moved to this frame by the optical flow. Followers of
        prompts no longer given are forgotten.
        """
        motion = MotionFrame(image_rgb, sequence)
        out = []
        with self._lock:
            live = set()
            for prompt in prompts:
                given = tuple(float(v) for v in prompt.box_xywh)
                if not self.wants(getattr(prompt, "follow", FOLLOW_DEFAULT)):
                    out.append(FollowedPrompt(prompt.prompt_id, given))
                    continue
                live.add(prompt.prompt_id)
                follower = self._followers.get(prompt.prompt_id)
                if follower is None:
                    follower = self._followers[prompt.prompt_id] = BoxFollower(given, sequence, self.settings)
                elif follower.given != given:
                    follower.restart(given, sequence)
                else:
                    follower.advance(self._previous, motion)
                out.append(FollowedPrompt(prompt.prompt_id, follower.box_for(sequence), follower,
                                          self.settings.second_pass and not follower.fresh, follower.lost))
            for prompt_id in [k for k in self._followers if k not in live]:
                del self._followers[prompt_id]
            self._previous = motion
        return out

    def retain(self, prompts: Sequence) -> None:
        """Forget the followers of prompts not in ``prompts`` (a frame with no followed prompt)."""
        with self._lock:
            live = {p.prompt_id for p in prompts if self.wants(getattr(p, "follow", FOLLOW_DEFAULT))}
            for prompt_id in [k for k in self._followers if k not in live]:
                del self._followers[prompt_id]
            if not self._followers:
                self._previous = None

    def boxes_for(self, prompts: Sequence, sequence: int) -> list[Box | None]:
        """Each prompt's box on a future frame ``sequence`` (the sensor's ROI); None: LOST.

        Prompts without a follower yet, or fixed, keep their given box."""
        with self._lock:
            out: list[Box | None] = []
            for prompt in prompts:
                follower = self._followers.get(prompt.prompt_id)
                given = tuple(float(v) for v in prompt.box_xywh)
                if follower is None or not self.wants(getattr(prompt, "follow", FOLLOW_DEFAULT)):
                    out.append(given)
                elif follower.given != given:
                    out.append(given)  # a new box the worker has not taken yet
                elif follower.lost:
                    out.append(None)
                else:
                    box = follower.box_for(sequence)
                    follower.issued.append(box)
                    out.append(box)
            return out

    def issued(self, prompt_id: int, box: Sequence[float] | None) -> bool:
        """True when ``box`` is one this prompt's follower gave out for a sensor ROI since its last start."""
        if box is None:
            return False
        with self._lock:
            follower = self._followers.get(prompt_id)
            if follower is None:
                return False
            box = tuple(float(v) for v in box)
            return box == follower.given or box in follower.issued

    def observe(self, followed: FollowedPrompt, logits: np.ndarray | None, crop: CropRect | None,
                box_used: Sequence[float] | None, threshold: float) -> None:
        """The mask made for ``box_used`` on this frame (None: the prompt had no mask here)."""
        if followed.follower is None:
            return
        with self._lock:
            if box_used is None:
                followed.follower.mark_unseen()
            else:
                followed.follower.observe(logits, crop, box_used, threshold)

    def published(
        self, followed: FollowedPrompt, crop: CropRect | None, crop_mask: np.ndarray | None
    ) -> None:
        """The mask published for the prompt on this frame (the next frame's flow points)."""
        if followed.follower is None or crop is None or crop_mask is None:
            return
        with self._lock:
            followed.follower.keep_region(crop, crop_mask)

    def corrected_box(self, followed: FollowedPrompt) -> Box:
        with self._lock:
            return followed.follower.box() if followed.follower is not None else followed.box

    def clear(self) -> None:
        with self._lock:
            self._followers.clear()
            self._previous = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._followers)


def settings_with(**changes) -> FollowSettings:
    """FollowSettings with some values changed (bench and tests)."""
    return replace(FollowSettings(), **changes)
