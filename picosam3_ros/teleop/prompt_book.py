"""Prompts made in the teleop page: validation, coordinates, the prompt set, rate limiting.

ROS-free. The page sends a drag in *display* pixels together with the size the image
was displayed at; the stream size (the frames' pixels, which ROIs refer to) is known
only to the server. Converting here, against the stream size of the latest frame,
keeps the page simple and the result right whatever the page's zoom, window size or
the stream resolution.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping


class InvalidPromptError(ValueError):
    """A request from the page that must not become a prompt (the message says why)."""


@dataclass(frozen=True)
class Box:
    """A box in stream pixels: top-left corner and size (integers, inside the frame)."""

    x: int
    y: int
    width: int
    height: int

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


def _finite_number(payload: Mapping[str, Any], key: str) -> float:
    value = payload.get(key)
    # bool is an int subclass: a JSON true is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidPromptError(f"'{key}' must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # a JSON integer such as 10**400 is valid JSON but no float
        raise InvalidPromptError(f"'{key}' is out of range") from None
    if not math.isfinite(value):
        raise InvalidPromptError(f"'{key}' must be finite, got {value!r}")
    return value


def display_box_to_stream(
    payload: Mapping[str, Any],
    stream_width: int,
    stream_height: int,
    min_size: int = 4,
) -> Box:
    """Convert a drag from the page into a box in stream pixels, or raise InvalidPromptError.

    payload: x0, y0, x1, y1 (the two drag corners, any order) and display_width,
    display_height (the size the image was drawn at), all in CSS pixels relative to the
    image's top-left corner. The x and y axes scale independently, so a stretched display
    maps right too. The box is clipped to the frame; a drag that misses the image, or is
    smaller than ``min_size`` stream pixels either way after clipping, is rejected.
    """
    if stream_width <= 0 or stream_height <= 0:
        raise InvalidPromptError("no camera frame yet: the stream size is unknown")
    x0, y0, x1, y1 = (_finite_number(payload, k) for k in ("x0", "y0", "x1", "y1"))
    display_w = _finite_number(payload, "display_width")
    display_h = _finite_number(payload, "display_height")
    if display_w < 1 or display_h < 1:
        raise InvalidPromptError(f"display size {display_w}x{display_h} is too small")
    sx = stream_width / display_w
    sy = stream_height / display_h
    left, right = sorted((x0 * sx, x1 * sx))
    top, bottom = sorted((y0 * sy, y1 * sy))
    if right <= 0 or bottom <= 0 or left >= stream_width or top >= stream_height:
        raise InvalidPromptError("the box lies outside the image")
    # Clip, then snap outwards to whole pixels so the operator's box is never shrunk.
    left = max(0, math.floor(max(left, 0.0)))
    top = max(0, math.floor(max(top, 0.0)))
    right = min(stream_width, math.ceil(min(right, float(stream_width))))
    bottom = min(stream_height, math.ceil(min(bottom, float(stream_height))))
    width, height = right - left, bottom - top
    if width < min_size or height < min_size:
        raise InvalidPromptError(
            f"the box is {width}x{height} stream pixels after clipping; at least {min_size}x{min_size} needed"
        )
    return Box(left, top, width, height)


def box_fits(box: Box, stream_width: int, stream_height: int) -> bool:
    """True when the box is non-empty and entirely inside a stream_width x stream_height frame."""
    return (
        box.width > 0
        and box.height > 0
        and box.x >= 0
        and box.y >= 0
        and box.x + box.width <= stream_width
        and box.y + box.height <= stream_height
    )


# The stream prompts are drawn on: (width, height, frame_id).
Stream = tuple[int, int, str]


def describe_stream(stream: Stream) -> str:
    return f"{stream[0]}x{stream[1]} '{stream[2]}'"


class RateLimiter:
    """Token bucket: ``rate`` requests per second on average, bursts of up to ``burst``.

    Time is passed in (monotonic seconds), so tests need no clock.
    """

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._last: float | None = None
        self.rejected = 0

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.rejected += 1
        return False


@dataclass
class PromptBook:
    """The operator's prompts: ids from 1 up (0 belongs to the `roi` topic), at most max_prompts.

    The prompts belong to the stream they were drawn on (:attr:`stream`: size and frame_id):
    they are published in its frame_id, and only the operator removes them. A frame of another
    size or frame_id (a glitch, another camera on the topic) changes nothing here; while the
    stream differs, new prompts are refused with the reason, until the operator clears the set.

    Thread-safe: the HTTP threads change it, the node reads it to publish.
    """

    max_prompts: int = 8
    _prompts: dict[int, Box] = field(default_factory=dict)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 0
    stream: Stream | None = None  # None while the book is empty

    def add(self, box: Box, stream: Stream = (0, 0, "")) -> int:
        with self._lock:
            if self._prompts and self.stream != stream:
                raise InvalidPromptError(
                    f"the stream is now {describe_stream(stream)} but the prompts are for "
                    f"{describe_stream(self.stream)}: clear them to draw on the new stream")
            if len(self._prompts) >= self.max_prompts:
                raise InvalidPromptError(f"already {self.max_prompts} prompts: remove one first")
            prompt_id = self._next_id
            self._next_id += 1
            self._prompts[prompt_id] = box
            self.stream = stream
            self.version += 1
            return prompt_id

    def replace(self, prompt_id: int, box: Box) -> None:
        """A new box for an existing prompt (a drag started on it): the sensor node's follower starts
        again from it."""
        with self._lock:
            if prompt_id not in self._prompts:
                raise InvalidPromptError(f"no prompt with id {prompt_id}")
            self._prompts[prompt_id] = box
            self.version += 1

    def remove(self, prompt_id: int) -> None:
        with self._lock:
            if prompt_id not in self._prompts:
                raise InvalidPromptError(f"no prompt with id {prompt_id}")
            del self._prompts[prompt_id]
            if not self._prompts:
                self.stream = None
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._prompts.clear()
            self.stream = None
            self.version += 1

    def snapshot(self) -> list[tuple[int, Box]]:
        """The prompts, oldest first."""
        with self._lock:
            return sorted(self._prompts.items())

    def view(self) -> tuple[Stream | None, list[tuple[int, Box]]]:
        """The stream and the prompts, read together (what one published set holds)."""
        with self._lock:
            return self.stream, sorted(self._prompts.items())


def parse_prompt_id(payload: Mapping[str, Any]) -> int:
    value = payload.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise InvalidPromptError(f"'id' must be a positive integer prompt id, got {value!r}")
    return value
