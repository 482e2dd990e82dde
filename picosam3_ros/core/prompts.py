"""The prompt store: what the node segments on each frame (ROS-free, thread-safe).

Rules (documented in the README):

* ``set_all`` replaces the whole set (the ``prompts`` topic); ``set_one``
  replaces a single prompt (the ``roi`` topic uses id 0). Duplicate ids in one
  set: the last one wins.
* At most ``max_prompts`` prompts are kept (in the order given); the others
  are reported once, with TOO_MANY_PROMPTS, on the next frame, then forgotten.
* The work per message and per frame is bounded whatever a publisher sends: only the
  first ``MAX_MESSAGE_PROMPTS`` entries of one array are read (the rest count as
  dropped), and the one-off reports a frame carries are capped at ``MAX_REPORTS``
  (invalid boxes first, then the surplus ids in order); the log line and
  ``/diagnostics`` give the full counts. One message of 50,000 prompts once stalled
  the node for 7 s and made the next frame carry 50,000 entries.
* Boxes with non-finite or negative values are rejected at once (reported
  once as INVALID_ROI). Zero-size boxes and boxes outside the frame stay in
  the set and get INVALID_ROI on every frame (the frame size decides); boxes
  partly outside are clipped by the crop rule.
* ``prompt_timeout`` (s, 0 = never): a prompt older than that (since it was
  received) is reported once as STALE_PROMPT and removed. The node's default (2 s)
  means a detector that dies stops steering the robot two seconds later; publishers
  repeat their set (the teleop page and the demo's stand-in detector every second).
* A prompt whose ``frame_id`` is set and differs from the frame's gets
  INVALID_ROI on that frame (its pixels refer to another image). The first such frame of
  each received prompt also counts it as rejected (``FramePlan.change``: the node logs the
  reason, throttled, and counts it in ``/diagnostics``), so a detector publishing in the
  wrong frame is said once per prompt it sends, not once per frame nor never.
* Followed prompts (``core/follow.py``): the store keeps the box as given; a message repeating
  it only refreshes the stamp (a keep-alive), the followers keep the box on the object.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Sequence

from picosam3_ros.core.pipeline import Prompt, PromptResult, Status

MAX_MESSAGE_PROMPTS = 1024  # entries read from one RoiPromptArray (max_prompts is at most 255)
MAX_REPORTS = 64  # one-off INVALID_ROI / TOO_MANY_PROMPTS results carried by the next frame
MAX_LOGGED_PROBLEMS = 3  # invalid boxes described one by one in the log line; the rest are counted


@dataclass
class PromptChange:
    """What a change to the set rejected: ``rejected`` prompts in all, ``lines`` to log (a few, short)."""

    rejected: int = 0
    lines: list[str] = field(default_factory=list)


@dataclass
class FramePlan:
    """What to do on one frame: ``prompts`` to segment, ``reports`` (results decided without a network).

    ``change``: prompts this frame rejected for the first time (a frame_id that is not the
    frame's), to log and count like a rejected prompt set.
    """

    prompts: list[Prompt] = field(default_factory=list)
    reports: list[PromptResult] = field(default_factory=list)
    change: PromptChange = field(default_factory=PromptChange)


class PromptStore:
    def __init__(self, max_prompts: int = 16, timeout_s: float = 0.0):
        if max_prompts < 1:
            raise ValueError("max_prompts must be >= 1")
        self.max_prompts = int(max_prompts)
        self.timeout_ns = int(max(0.0, timeout_s) * 1e9)
        self._lock = threading.Lock()
        self._prompts: dict[int, Prompt] = {}
        self._pending: list[PromptResult] = []
        self._wrong_frame_told: dict[int, int] = {}  # prompt id -> stamp of the prompt already counted

    def configure(self, max_prompts: int, timeout_s: float) -> None:
        """New limits at run time; they apply from the next prompt set / frame on."""
        if max_prompts < 1:
            raise ValueError("max_prompts must be >= 1")
        with self._lock:
            self.max_prompts = int(max_prompts)
            self.timeout_ns = int(max(0.0, timeout_s) * 1e9)

    def __len__(self) -> int:
        with self._lock:
            return len(self._prompts)

    @staticmethod
    def _problem(prompt: Prompt) -> str | None:
        values = prompt.box_xywh
        if len(values) != 4 or not all(math.isfinite(float(v)) for v in values):
            return f"prompt {prompt.prompt_id}: box {values!r} has non-finite values"
        if values[2] < 0 or values[3] < 0:
            return f"prompt {prompt.prompt_id}: box {values!r} has a negative size"
        return None

    def set_all(self, prompts: Sequence[Prompt], unread: int = 0) -> PromptChange:
        """Replace the whole set with ``prompts`` (at most MAX_MESSAGE_PROMPTS of them are read).

        unread: entries of the same message the caller did not even convert (they count
        as dropped, like the entries past MAX_MESSAGE_PROMPTS here).
        """
        unread += max(0, len(prompts) - MAX_MESSAGE_PROMPTS)
        unique: dict[int, Prompt] = {}
        for prompt in prompts[:MAX_MESSAGE_PROMPTS]:
            unique.pop(prompt.prompt_id, None)  # last wins, at its own position
            unique[prompt.prompt_id] = prompt
        problems: list[str] = []
        invalid: list[PromptResult] = []
        surplus: list[PromptResult] = []
        accepted: dict[int, Prompt] = {}
        for prompt in unique.values():
            problem = self._problem(prompt)
            if problem is not None:
                problems.append(problem)
                invalid.append(PromptResult(prompt.prompt_id, Status.INVALID_ROI, detail=problem))
            elif len(accepted) < self.max_prompts:
                accepted[prompt.prompt_id] = prompt
            elif len(surplus) < MAX_REPORTS:
                surplus.append(PromptResult(prompt.prompt_id, Status.TOO_MANY_PROMPTS))
        dropped = len(unique) - len(accepted) - len(invalid) + unread
        change = PromptChange(len(invalid) + dropped, problems[:MAX_LOGGED_PROBLEMS])
        if len(problems) > MAX_LOGGED_PROBLEMS:
            change.lines.append(f"{len(problems) - MAX_LOGGED_PROBLEMS} more prompts with invalid boxes")
        if dropped:
            change.lines.append(
                f"{dropped} prompts over max_prompts={self.max_prompts} were dropped"
                + (f" (the first {len(surplus)} are reported)" if len(surplus) < dropped else "")
            )
        with self._lock:
            self._prompts = accepted
            self._pending = (invalid + surplus)[:MAX_REPORTS]
        return change

    def set_one(self, prompt: Prompt) -> PromptChange:
        """Replace (or add) one prompt, keeping the others."""
        problem = self._problem(prompt)
        with self._lock:
            if problem is not None:
                self._prompts.pop(prompt.prompt_id, None)
                self._report(PromptResult(prompt.prompt_id, Status.INVALID_ROI, detail=problem))
                return PromptChange(1, [problem])
            if prompt.prompt_id not in self._prompts and len(self._prompts) >= self.max_prompts:
                self._report(PromptResult(prompt.prompt_id, Status.TOO_MANY_PROMPTS))
                line = f"prompt {prompt.prompt_id} dropped: already max_prompts={self.max_prompts}"
                return PromptChange(1, [line])
            self._prompts[prompt.prompt_id] = prompt
        return PromptChange()

    def _report(self, result: PromptResult) -> None:
        """Queue a one-off report for the next frame (lock held); a flood without frames stays bounded."""
        if len(self._pending) < MAX_REPORTS:
            self._pending.append(result)

    def clear(self) -> None:
        with self._lock:
            self._prompts.clear()
            self._pending.clear()

    def snapshot(self) -> list[Prompt]:
        with self._lock:
            return list(self._prompts.values())

    def plan(self, now_ns: int, frame_id: str = "") -> FramePlan:
        """The prompts for a frame arriving at ``now_ns``, plus one-off and per-frame reports."""
        plan = FramePlan()
        with self._lock:
            plan.reports, self._pending = self._pending, []
            for prompt_id, prompt in list(self._prompts.items()):
                if self.timeout_ns and now_ns - prompt.stamp_ns > self.timeout_ns:
                    del self._prompts[prompt_id]
                    plan.reports.append(
                        PromptResult(prompt_id, Status.STALE_PROMPT, detail="older than prompt_timeout")
                    )
                elif prompt.frame_id and frame_id and prompt.frame_id != frame_id:
                    detail = f"prompt frame_id '{prompt.frame_id}' != image frame_id '{frame_id}'"
                    plan.reports.append(PromptResult(prompt_id, Status.INVALID_ROI, detail=detail))
                    if self._wrong_frame_told.get(prompt_id) != prompt.stamp_ns:
                        self._wrong_frame_told[prompt_id] = prompt.stamp_ns
                        plan.change.rejected += 1
                        if len(plan.change.lines) < MAX_LOGGED_PROBLEMS:
                            plan.change.lines.append(f"prompt {prompt_id}: {detail} (INVALID_ROI)")
                else:
                    plan.prompts.append(prompt)
            for prompt_id in [i for i in self._wrong_frame_told if i not in self._prompts]:
                del self._wrong_frame_told[prompt_id]
        if plan.change.rejected > len(plan.change.lines):
            plan.change.lines.append(
                f"{plan.change.rejected - len(plan.change.lines)} more prompts in another frame_id")
        return plan
