"""The prompt store: what the node segments on each frame (ROS-free, thread-safe).

Rules (documented in the README):

* ``set_all`` replaces the whole set (the ``prompts`` topic); ``set_one``
  replaces a single prompt (the ``roi`` topic uses id 0). Duplicate ids in one
  set: the last one wins.
* At most ``max_prompts`` prompts are kept (in the order given); the others
  are reported once, with TOO_MANY_PROMPTS, on the next frame, then forgotten.
* Boxes with non-finite or negative values are rejected at once (reported
  once as INVALID_ROI). Zero-size boxes and boxes outside the frame stay in
  the set and get INVALID_ROI on every frame (the frame size decides); boxes
  partly outside are clipped by the crop rule.
* ``prompt_timeout`` (s, 0 = never): a prompt older than that (since it was
  received) is reported once as STALE_PROMPT and removed.
* A prompt whose ``frame_id`` is set and differs from the frame's gets
  INVALID_ROI on that frame (its pixels refer to another image).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Iterable

from picosam3_ros.core.pipeline import Prompt, PromptResult, Status


@dataclass
class FramePlan:
    """What to do on one frame: ``prompts`` to segment, ``reports`` (results decided without a network)."""

    prompts: list[Prompt] = field(default_factory=list)
    reports: list[PromptResult] = field(default_factory=list)


class PromptStore:
    def __init__(self, max_prompts: int = 16, timeout_s: float = 0.0):
        if max_prompts < 1:
            raise ValueError("max_prompts must be >= 1")
        self.max_prompts = int(max_prompts)
        self.timeout_ns = int(max(0.0, timeout_s) * 1e9)
        self._lock = threading.Lock()
        self._prompts: dict[int, Prompt] = {}
        self._pending: list[PromptResult] = []

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

    def set_all(self, prompts: Iterable[Prompt]) -> list[str]:
        """Replace the whole set; returns log lines for what was rejected or dropped."""
        unique: dict[int, Prompt] = {}
        for prompt in prompts:
            unique.pop(prompt.prompt_id, None)  # last wins, at its own position
            unique[prompt.prompt_id] = prompt
        messages: list[str] = []
        accepted: dict[int, Prompt] = {}
        pending: list[PromptResult] = []
        for prompt in unique.values():
            problem = self._problem(prompt)
            if problem is not None:
                messages.append(problem)
                pending.append(PromptResult(prompt.prompt_id, Status.INVALID_ROI, detail=problem))
            elif len(accepted) < self.max_prompts:
                accepted[prompt.prompt_id] = prompt
            else:
                pending.append(PromptResult(prompt.prompt_id, Status.TOO_MANY_PROMPTS))
        dropped = sum(1 for p in pending if p.status == Status.TOO_MANY_PROMPTS)
        if dropped:
            messages.append(f"{dropped} prompts over max_prompts={self.max_prompts} were dropped")
        with self._lock:
            self._prompts = accepted
            self._pending = pending
        return messages

    def set_one(self, prompt: Prompt) -> list[str]:
        """Replace (or add) one prompt, keeping the others."""
        problem = self._problem(prompt)
        with self._lock:
            if problem is not None:
                self._prompts.pop(prompt.prompt_id, None)
                self._pending.append(PromptResult(prompt.prompt_id, Status.INVALID_ROI, detail=problem))
                return [problem]
            if prompt.prompt_id not in self._prompts and len(self._prompts) >= self.max_prompts:
                self._pending.append(PromptResult(prompt.prompt_id, Status.TOO_MANY_PROMPTS))
                return [f"prompt {prompt.prompt_id} dropped: already max_prompts={self.max_prompts}"]
            self._prompts[prompt.prompt_id] = prompt
        return []

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
                    plan.reports.append(
                        PromptResult(
                            prompt_id,
                            Status.INVALID_ROI,
                            detail=f"prompt frame_id '{prompt.frame_id}' != image frame_id '{frame_id}'",
                        )
                    )
                else:
                    plan.prompts.append(prompt)
        return plan
