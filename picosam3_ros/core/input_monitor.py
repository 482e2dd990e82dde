"""Are the input frames arriving as fast as they are published? (ROS-free)

Large images between two processes on one host are lost silently when the camera
driver's Fast DDS shared-memory segment is too small (README "Large images over
DDS"); the node cannot fix the driver's process, but it can notice and say so.
The fraction of the publisher's frames that arrive, over a sliding window, from counts:

* the publication sequence numbers of the frames received (each DDS writer numbers its
  samples 1, 2, 3, ...): per writer, frames received / (last - first + 1). Exact, and blind
  to the header stamps: a healthy stream whose stamps jitter by +-8 ms is 100%, where the
  stamp steps read as 57% delivered (and a 10-minute soak logged 44 false WARNs);
* the DDS sample-lost events of the subscription, when the middleware reports them;

whichever says less. Without either (another RMW) the fraction is unknown and nothing
is claimed. And the case of nothing at all: publishers exist on the topic but no frame arrives.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Hashable

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
    """Feed it every frame (arrival time, ns; the writer and its sequence number when known)
    and the lost-sample counts; :meth:`assess` says how the input is doing."""

    def __init__(self, topic: str, fix_hint: str, window_s: float = 3.0, min_frames: int = 4):
        self.topic = topic
        self.fix_hint = fix_hint
        self.window_ns = int(window_s * 1e9)
        self.min_frames = min_frames
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, Hashable, int | None]] = deque()  # (arrival_ns, writer, sequence)
        self._lost: deque[tuple[int, int]] = deque()  # (arrival_ns, count)
        self._last_arrival_ns: int | None = None
        self.started_ns: int | None = None

    def frame(self, arrival_ns: int, writer: Hashable = None, sequence: int | None = None) -> None:
        with self._lock:
            self._frames.append((arrival_ns, writer, sequence))
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
        counted = len(frames) + lost
        if lost:
            fractions.append(len(frames) / (len(frames) + lost))
        received, expected, sequence_hz = _sequence_counts(frames)
        if expected:
            fractions.append(received / expected)
            counted = max(counted, expected)
        fraction = min(fractions) if fractions else 1.0
        published_hz = sequence_hz or (received_hz / fraction if fraction > 0 and fractions else 0.0)
        if counted >= self.min_frames and fraction < warn_fraction:
            return InputHealth(
                WARN,
                f"only {100 * fraction:.0f}% of the frames published on {self.topic} arrive "
                f"({received_hz:.1f} of ~{published_hz:.1f} frames/s). Fix: {self.fix_hint}",
                received_hz, published_hz, fraction,
            )
        return InputHealth(OK, f"frames arriving on {self.topic}", received_hz, published_hz, fraction)


def _sequence_counts(frames: list[tuple[int, Hashable, int | None]]) -> tuple[int, int, float]:
    """(frames received, frames published, publishing rate in Hz) in the window, summed over the
    writers with sequence numbers (the rate: 0 when no writer has two frames apart in time)."""
    by_writer: dict[Hashable, dict[int, int]] = {}  # writer -> sequence -> arrival
    for arrival, writer, sequence in frames:
        if sequence is not None:
            by_writer.setdefault(writer, {}).setdefault(sequence, arrival)
    received = expected = 0
    rate = 0.0
    for numbers in by_writer.values():
        first, last = min(numbers), max(numbers)
        received += len(numbers)
        expected += last - first + 1
        if numbers[last] > numbers[first]:
            rate += (last - first) / ((numbers[last] - numbers[first]) / 1e9)
    return received, expected, rate
