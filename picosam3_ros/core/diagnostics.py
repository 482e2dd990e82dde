"""Runtime statistics of the sensor node (ROS-free); the node publishes them on /diagnostics."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

OK, WARN, ERROR = 0, 1, 2


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0):
        self.window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()
        self.count = 0

    def tick(self, now_ns: int | None = None) -> None:
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._times.append(now)
        self.count += 1
        self._trim(now)

    def _trim(self, now: int) -> None:
        while self._times and now - self._times[0] > self.window_ns:
            self._times.popleft()

    def rate(self, now_ns: int | None = None) -> float:
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / (span / 1e9) if span > 0 else 0.0


class LatencyStats:
    """Percentiles over the last ``size`` samples (ms)."""

    def __init__(self, size: int = 600):
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, value_ms: float) -> None:
        self._samples.append(float(value_ms))

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self._samples), q)) if self._samples else 0.0


class NodeStats:
    """Everything /diagnostics reports; updated from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames_in = RateMeter()
        self.frames_out = RateMeter()
        self.latency = LatencyStats()
        self.sensor_dnn = LatencyStats()
        self.drops = 0
        self.fallbacks = 0
        self.backend_errors = 0
        self.bad_images = 0
        self.bad_prompts = 0
        self.not_served = 0
        self.ambiguous = 0
        self.backend = ""
        self.fallback_reason = ""
        self.last_error = ""

    def summary(self) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) for a DiagnosticStatus."""
        with self.lock:
            values = [
                ("backend", self.backend),
                ("input_rate_hz", f"{self.frames_in.rate():.2f}"),
                ("output_rate_hz", f"{self.frames_out.rate():.2f}"),
                ("frames_in", str(self.frames_in.count)),
                ("frames_out", str(self.frames_out.count)),
                ("latency_p50_ms", f"{self.latency.percentile(50):.2f}"),
                ("latency_p99_ms", f"{self.latency.percentile(99):.2f}"),
                ("drops", str(self.drops)),
                ("fallbacks", str(self.fallbacks)),
                ("fallback_reason", self.fallback_reason),
                ("backend_errors", str(self.backend_errors)),
                ("bad_images", str(self.bad_images)),
                ("bad_prompts", str(self.bad_prompts)),
                ("sensor_dnn_p50_ms", f"{self.sensor_dnn.percentile(50):.2f}"),
                ("ambiguous_sensor_frames", str(self.ambiguous)),
                ("last_error", self.last_error),
            ]
            if self.fallbacks:
                level, message = WARN, f"running on {self.backend} after a fallback: {self.fallback_reason}"
            elif self.backend_errors:
                level, message = WARN, f"backend errors: {self.last_error}"
            else:
                level, message = OK, f"running on {self.backend}"
        return level, message, values
