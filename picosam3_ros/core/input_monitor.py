"""Are the input frames arriving as fast as they are published? (ROS-free)

Large images between two processes on one host are lost silently when the camera
driver's Fast DDS shared-memory segment is too small (README "Large images over
DDS"); the node cannot fix the driver's process, but it can notice and say so.
Two estimates of the fraction of the publisher's frames that arrive, over a
sliding window:

* the DDS sample-lost events of the subscription (exact for a best-effort reader:
  gaps in the writer's sequence numbers), when the middleware reports them;
* the header stamps: the publisher's frame period is the smallest stamp step between
  two received frames (frames that arrive back to back show it), so
  ``(received - 1) * period / stamp span`` is the delivered fraction. It needs
  honest, increasing stamps; zero or repeated stamps are ignored.

And the case of nothing at all: publishers exist on the topic but no frame arrives.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

OK, WARN = 0, 1


def choose_image_reliability(publishers: list[str]) -> str:
    """The reader reliability for publishers offering ``publishers`` ("reliable"/"best_effort").

    Reliable when every publisher is reliable (a reliable reader then repairs what the
    transport drops); best effort otherwise, since a reliable reader would not match a
    best-effort publisher at all. With no publisher yet: best effort, which matches whatever comes.
    """
    if publishers and all(kind == "reliable" for kind in publishers):
        return "reliable"
    return "best_effort"


@dataclass(frozen=True)
class InputHealth:
    level: int
    message: str
    received_hz: float
    published_hz: float  # 0 when unknown
    delivered_fraction: float  # 1.0 when unknown


class InputMonitor:
    """Feed it every frame (arrival and header stamp, ns) and the lost-sample counts."""

    def __init__(self, topic: str, fix_hint: str, window_s: float = 3.0, min_frames: int = 4):
        self.topic = topic
        self.fix_hint = fix_hint
        self.window_ns = int(window_s * 1e9)
        self.min_frames = min_frames
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, int]] = deque()  # (arrival_ns, stamp_ns)
        self._lost: deque[tuple[int, int]] = deque()  # (arrival_ns, count)
        self._last_arrival_ns: int | None = None
        self.started_ns: int | None = None

    def frame(self, arrival_ns: int, stamp_ns: int) -> None:
        with self._lock:
            self._frames.append((arrival_ns, stamp_ns))
            self._last_arrival_ns = arrival_ns
            self._trim(arrival_ns)

    def lost(self, now_ns: int, count: int) -> None:
        if count > 0:
            with self._lock:
                self._lost.append((now_ns, count))
                self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        for queue in (self._frames, self._lost):
            while queue and now_ns - queue[0][0] > self.window_ns:
                queue.popleft()

    def assess(self, now_ns: int, publishers: int, warn_fraction: float) -> InputHealth:
        """The input's health now; WARN when under ``warn_fraction`` of the frames arrive, or none."""
        with self._lock:
            if self.started_ns is None:
                self.started_ns = now_ns
            self._trim(now_ns)
            frames = list(self._frames)
            lost = sum(count for _, count in self._lost)
            last = self._last_arrival_ns
        if not frames:
            if publishers == 0:
                message = f"waiting for frames: nothing publishes on {self.topic}"
                return InputHealth(OK, message, 0.0, 0.0, 1.0)
            if now_ns - (last if last is not None else self.started_ns) < self.window_ns:
                return InputHealth(OK, f"waiting for frames on {self.topic}", 0.0, 0.0, 1.0)
            return InputHealth(
                WARN,
                f"no frame arrived on {self.topic} for {self.window_ns / 1e9:.0f} s although {publishers} "
                f"publisher(s) are there: QoS mismatch, or frames too large for the publisher's "
                f"transport. Fix: {self.fix_hint}",
                0.0, 0.0, 0.0,
            )
        span_s = max(1e-9, (now_ns - frames[0][0]) / 1e9) if len(frames) > 1 else self.window_ns / 1e9
        received_hz = (len(frames) - 1) / span_s if len(frames) > 1 else 0.0
        fractions = []
        if lost:
            fractions.append(len(frames) / (len(frames) + lost))
        stamps = [s for _, s in frames]
        steps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
        published_hz = 0.0
        if len(steps) >= self.min_frames - 1:
            period = min(steps)
            published_hz = 1e9 / period
            fractions.append(len(steps) * period / (stamps[-1] - stamps[0]))
        fraction = min(fractions) if fractions else 1.0
        if not published_hz and fraction > 0:  # no two frames in a row: the lost samples tell the rate
            published_hz = received_hz / fraction
        if len(frames) + lost >= self.min_frames and fraction < warn_fraction:
            return InputHealth(
                WARN,
                f"only {100 * fraction:.0f}% of the frames published on {self.topic} arrive "
                f"({received_hz:.1f} of ~{published_hz:.1f} frames/s). Fix: {self.fix_hint}",
                received_hz, published_hz, fraction,
            )
        return InputHealth(OK, f"frames arriving on {self.topic}", received_hz, published_hz, fraction)
