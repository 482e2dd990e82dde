"""Each prompt's last mask, carried on the frames where the sensor did not serve it (ROS-free).

The IMX500 segments one ROI per frame, so with several prompts each one is NOT_SERVED on
most frames and a consumer that only looks at the newest message sees its mask blink.
:class:`LastResults` keeps, per prompt, the last OK result and the header of the frame it
was computed on; a NOT_SERVED entry then carries that mask, crop and score *with that
older header* (the honest stamp: the mask is where the object was then, and the age is
the difference of the two stamps). The status stays NOT_SERVED, and the frame's label
mask (``mask`` topic) is still drawn from this frame's OK entries only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, Sequence, TypeVar

from picosam3_ros.core.pipeline import PromptResult, Status

HeaderT = TypeVar("HeaderT")


@dataclass(frozen=True)
class _Last(Generic[HeaderT]):
    result: PromptResult
    header: HeaderT


class LastResults(Generic[HeaderT]):
    """Per prompt id: the last OK result and its frame header (any object: rclpy Header, a stamp)."""

    def __init__(self) -> None:
        self._last: dict[int, _Last[HeaderT]] = {}

    def carry(
        self, results: Sequence[PromptResult], header: HeaderT, live_ids: Sequence[int] | None = None
    ) -> list[tuple[PromptResult, HeaderT]]:
        """``results`` of the frame with ``header``, each paired with the header it belongs to.

        OK results are remembered; NOT_SERVED ones with a remembered result come back carrying
        it (with its own header). Prompts not in ``live_ids`` (default: the ids in ``results``)
        are forgotten, so a removed prompt never comes back.
        """
        out: list[tuple[PromptResult, HeaderT]] = []
        for result in results:
            last = self._last.get(result.prompt_id)
            if result.status == Status.OK:
                self._last[result.prompt_id] = _Last(result, header)
                out.append((result, header))
            elif result.status == Status.NOT_SERVED and last is not None:
                carried = replace(
                    last.result,
                    status=Status.NOT_SERVED,
                    logits96=None,
                    detail="carried: the last mask of this prompt, from the frame in this entry's header",
                )
                out.append((carried, last.header))
            else:
                out.append((result, header))
        live = set(live_ids) if live_ids is not None else {r.prompt_id for r in results}
        for prompt_id in [k for k in self._last if k not in live]:
            del self._last[prompt_id]
        return out

    def clear(self) -> None:
        self._last.clear()

    def __len__(self) -> int:
        return len(self._last)


def stamp_age_ms(newer: Any, older: Any) -> float:
    """Milliseconds between two builtin_interfaces/Time-like stamps (sec, nanosec)."""
    return ((newer.sec - older.sec) * 1_000_000_000 + (newer.nanosec - older.nanosec)) / 1e6
