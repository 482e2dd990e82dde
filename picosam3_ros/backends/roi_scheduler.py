"""Which prompt the sensor serves next (one ROI per frame), ROS-free.

* ``round_robin``: prompts in turn.
* ``staleness``: the prompt with the highest ``age * (1 + motion)``, where age
  is the number of frames since it was last served and motion the displacement
  of its box since then, in box sizes. Fair for still boxes (it then equals
  round robin) and refreshes moving objects first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from picosam3_ros.core.crop import CropRect, InvalidRoiError
from picosam3_ros.core.pipeline import Prompt, prompt_crop

POLICIES = ("round_robin", "staleness")


@dataclass
class _Served:
    tick: int
    box: tuple[float, float, float, float]


def box_motion(old: Sequence[float], new: Sequence[float]) -> float:
    """Centre displacement plus size change, in units of the old box size."""
    ox, oy, ow, oh = old
    nx, ny, nw, nh = new
    scale = max(1.0, ow, oh)
    shift = abs((nx + nw / 2) - (ox + ow / 2)) + abs((ny + nh / 2) - (oy + oh / 2))
    return (shift + abs(nw - ow) + abs(nh - oh)) / scale


class RoiScheduler:
    def __init__(self, policy: str = "staleness"):
        if policy not in POLICIES:
            raise ValueError(f"unknown ROI policy {policy!r} (known: {', '.join(POLICIES)})")
        self.policy = policy
        self._tick = 0
        self._served: dict[int, _Served] = {}
        self._cursor = 0

    def choose(
        self,
        prompts: Sequence[Prompt],
        stream_size: tuple[int, int],
        crops: Sequence[CropRect | InvalidRoiError] | None = None,
    ) -> tuple[Prompt, CropRect] | None:
        """The prompt to serve next and its crop (stream pixels), or None when no prompt is valid.

        ``crops``: each prompt's crop (or why it has none) when the caller has them already.
        """
        self._tick += 1
        if crops is None:
            crops = [prompt_crop(prompt, stream_size) for prompt in prompts]
        candidates = [(p, c) for p, c in zip(prompts, crops) if isinstance(c, CropRect)]
        live = {p.prompt_id for p, _ in candidates}
        self._served = {k: v for k, v in self._served.items() if k in live}
        if not candidates:
            return None
        if self.policy == "round_robin":
            choice = candidates[self._cursor % len(candidates)]
            self._cursor = (self._cursor + 1) % len(candidates)
        else:
            choice = max(candidates, key=lambda c: self._priority(c[0]))
        self._served[choice[0].prompt_id] = _Served(self._tick, tuple(choice[0].box_xywh))
        return choice

    def _priority(self, prompt: Prompt) -> float:
        served = self._served.get(prompt.prompt_id)
        if served is None:
            return float("inf")
        age = self._tick - served.tick
        return age * (1.0 + box_motion(served.box, prompt.box_xywh))
