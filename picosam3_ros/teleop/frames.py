"""Frames, masks and segmentation results for the teleop page: pairing, overlay, JPEG.

ROS-free. The node's callbacks only hand arrays over (cheap); one encoder thread pairs
each mask with the frame it was computed on (same stamp), tints the mask in its prompt's
colour, encodes a JPEG at most ``max_fps`` times a second and wakes the HTTP streams.
While masks are arriving only frames that have their mask are shown, so the overlay
never slides against the picture; when they stop, raw frames are shown again. Nothing is
encoded while nobody watches (no stream open, no snapshot asked for in the last seconds):
on a robot the CPU belongs to the sensor node.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Iterator

import cv2
import numpy as np

from picosam3_ros.core.compressed_guard import DEFAULT_MAX_PIXELS, PayloadRefused, check_payload
from picosam3_ros.core.image_conversion import (
    ImageConversionError,
    check_image,
    compressed_to_rgb,
    image_to_rgb,
)
from picosam3_ros.core.palette import prompt_color

MAX_FRAME_SIDE = 8192  # px; the IMX500's full sensor is 4056x3040
MAX_FRAME_PIXELS = DEFAULT_MAX_PIXELS
MAX_FRAME_ID_LENGTH = 256


@dataclass(frozen=True)
class CompressedFrame:
    """A sensor_msgs/CompressedImage that passed the payload guard, with the size its header gives."""

    header: Any
    format: str
    data: Any
    width: int
    height: int


def to_bgr(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image or CompressedImage (or any object with their fields) as HxWx3 BGR for
    the JPEG encoder; a compressed one is decoded only behind the payload guard.

    Raises ImageConversionError (a ValueError) when it cannot be shown.
    """
    if hasattr(msg, "format"):
        rgb = compressed_to_rgb(msg, MAX_FRAME_PIXELS)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb)  # a fresh array: in place
    return cv2.cvtColor(image_to_rgb(msg, MAX_FRAME_PIXELS), cv2.COLOR_RGB2BGR)


def frame_size(frame: Any) -> tuple[int, int]:
    """(width, height) of a frame that passed :func:`frame_problem`."""
    if hasattr(frame, "format") and not isinstance(frame, CompressedFrame):
        header = check_payload(frame.data, str(frame.format), MAX_FRAME_PIXELS)
        return header.width, header.height
    return int(frame.width), int(frame.height)


def frame_problem(frame: Any) -> str | None:
    """Why a frame must not reach the page (and set its stream size and frame_id), or None.

    A 0x0 frame, or a header-only 60000x60000 one, used to become the stream size: the
    first removed every prompt, the second scaled the next drag into a box far outside any
    real frame, published in the sender's frame_id. A compressed frame is judged by the
    payload guard (core/compressed_guard.py) from its header, without decoding it.
    """
    try:
        if hasattr(frame, "format"):
            header = check_payload(frame.data, str(frame.format), MAX_FRAME_PIXELS)
            if max(header.width, header.height) > MAX_FRAME_SIDE:
                return f"image is {header.width}x{header.height}: larger than {MAX_FRAME_SIDE} pixels a side"
        else:
            check_image(frame, MAX_FRAME_SIDE, MAX_FRAME_PIXELS)
    except (ImageConversionError, PayloadRefused) as exc:
        return str(exc)
    frame_id = str(frame.header.frame_id)
    if len(frame_id) > MAX_FRAME_ID_LENGTH or not frame_id.isprintable() or " " in frame_id:
        return f"frame_id {frame_id[:40]!r} is not a frame name (printable, no spaces, <= 256 characters)"
    return None


@dataclass(frozen=True)
class PromptResult:
    """One prompt's result on one frame (from picosam3_msgs/Segmentation).

    A NOT_SERVED entry may carry the prompt's last mask (the sensor serves one prompt per
    frame): ``age_ms`` is then how much older its frame is, and ``carried`` = (crop x, y, w, h,
    crop-local mono8 mask), drawn dimmed so the prompt does not blink. ``age_ms`` < 0: not carried.
    ``box``: where the node followed the prompt's box to (Segmentation.box, stream pixels), or None.
    """

    prompt_id: int
    status: str
    score: float
    backend: str
    latency_ms: float
    age_ms: float = -1.0
    carried: tuple[int, int, int, int, np.ndarray] | None = None
    box: tuple[int, int, int, int] | None = None


def overlay_mask(bgr: np.ndarray, mask: np.ndarray, prompt_ids: list[int], alpha: float) -> np.ndarray:
    """Tint mask pixels with value k in the colour of prompt_ids[k-1]; outline each region solidly."""
    if mask.shape != bgr.shape[:2]:
        mask = cv2.resize(mask, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for k in range(1, 256):
        # Values without a known prompt (no segmentations for this frame) get the k-th colour.
        pid = prompt_ids[k - 1] if k - 1 < len(prompt_ids) else k
        lut[k] = prompt_color(pid)[::-1]
    inside = mask != 0
    out = bgr.copy()
    if inside.any():
        tint = lut[mask[inside]].astype(np.float32)
        out[inside] = (bgr[inside].astype(np.float32) * (1.0 - alpha) + tint * alpha).astype(np.uint8)
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) != 0
        out[edge] = lut[cv2.dilate(mask, np.ones((3, 3), np.uint8))[edge]]
    return out


def overlay_carried(bgr: np.ndarray, results: list[PromptResult], alpha: float) -> np.ndarray:
    """Tint each carried mask (a prompt's last mask, from an older frame) at a third of ``alpha``."""
    out = bgr
    for result in results:
        if result.carried is None:
            continue
        x, y, width, height, mask = result.carried
        x1, y1 = min(x + width, bgr.shape[1]), min(y + height, bgr.shape[0])
        if mask.shape != (height, width) or x1 <= x or y1 <= y:
            continue
        inside = mask[: y1 - y, : x1 - x] != 0
        region = out[y:y1, x:x1]
        tint = np.array(prompt_color(result.prompt_id)[::-1], np.float32)
        dim = alpha / 3.0
        region[inside] = (region[inside].astype(np.float32) * (1.0 - dim) + tint * dim).astype(np.uint8)
    return out


class FrameHub:
    """Latest frames and results in, JPEGs out (one encoder thread shared by all viewers)."""

    def __init__(
        self, max_fps: float = 15.0, jpeg_quality: int = 80, mask_alpha: float = 0.45,
        ring_size: int = 30, overlay_hold_s: float = 0.5,
    ) -> None:
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self.mask_alpha = mask_alpha
        self.overlay_hold_s = overlay_hold_s
        self._ring_size = ring_size
        self._lock = threading.Condition()
        self._frames: OrderedDict[int, Any] = OrderedDict()
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._results: OrderedDict[int, list[PromptResult]] = OrderedDict()
        self._dirty = False
        self._stop = False
        self._viewers = 0
        self._wanted_until = -1e9  # monotonic time until which a snapshot keeps the encoder on
        self._thread: threading.Thread | None = None
        # Output side.
        self._jpeg_cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._encode_times: deque[float] = deque(maxlen=60)
        self._sent_times: deque[float] = deque(maxlen=240)
        # Statistics for the page.
        self.frames_received = 0
        self.frames_rejected = 0
        self.last_error = ""
        self.stream_size = (0, 0)
        self.frame_id = ""
        self.latest_results: list[PromptResult] = []
        self.latest_results_time = 0.0
        self._last_overlay_time = -1e9
        self._last_shown_stamp: int | None = None
        self._last_result_stamp: int | None = None

    # ---- input side (called from ROS callbacks; must stay cheap) -----------------------
    def put_frame(self, stamp_ns: int, frame: Any) -> bool:
        """A sensor_msgs/Image or CompressedImage (or any object with their fields); converted
        (decoded) only if it is shown.

        Returns False, changing nothing but the rejection count, for a frame that could not
        be shown: the stream size and frame_id come only from frames that pass
        :func:`frame_problem`.
        """
        problem = frame_problem(frame)
        if problem is not None:
            self.frames_rejected += 1
            self.last_error = f"frame on the image topic not shown: {problem}"
            return False
        width, height = frame_size(frame)
        if hasattr(frame, "format"):
            frame = CompressedFrame(frame.header, str(frame.format), frame.data, width, height)
        with self._lock:
            self._frames[stamp_ns] = frame
            self._frames.move_to_end(stamp_ns)
            while len(self._frames) > self._ring_size:
                self._frames.popitem(last=False)
            self.frames_received += 1
            self.stream_size = (width, height)
            self.frame_id = str(frame.header.frame_id)
            self._dirty = True
            self._lock.notify()
        return True

    def put_mask(self, stamp_ns: int, mask: np.ndarray) -> None:
        with self._lock:
            self._masks[stamp_ns] = mask
            while len(self._masks) > self._ring_size:
                self._masks.popitem(last=False)
            self._dirty = True
            self._lock.notify()

    def put_results(self, stamp_ns: int, results: list[PromptResult]) -> None:
        with self._lock:
            self._results[stamp_ns] = results
            while len(self._results) > self._ring_size:
                self._results.popitem(last=False)
            self.latest_results = results
            self.latest_results_time = time.monotonic()
            self._dirty = True
            self._lock.notify()

    # ---- output side --------------------------------------------------------------------
    def wait_jpeg(self, after_seq: int, timeout: float) -> tuple[int, bytes] | None:
        """Block until a JPEG newer than after_seq exists (or timeout/stop); return (seq, jpeg)."""
        with self._jpeg_cond:
            self._jpeg_cond.wait_for(lambda: self._stop or self._jpeg_seq > after_seq, timeout)
            if self._jpeg is None or self._jpeg_seq <= after_seq:
                return None
            return self._jpeg_seq, self._jpeg

    def latest_jpeg(self) -> bytes | None:
        with self._jpeg_cond:
            return self._jpeg

    def snapshot(self, timeout: float = 2.0) -> bytes | None:
        """A fresh JPEG for a one-off request (keeps the encoder on for a few seconds)."""
        with self._lock:
            self._wanted_until = time.monotonic() + 3.0
            self._dirty = True
            self._lock.notify()
        with self._jpeg_cond:
            seq = self._jpeg_seq
        got = self.wait_jpeg(seq, timeout)
        return got[1] if got else self.latest_jpeg()

    @contextlib.contextmanager
    def viewer(self) -> Iterator[None]:
        """Hold while streaming to a viewer: the encoder runs while at least one is held."""
        with self._lock:
            self._viewers += 1
            self._dirty = True
            self._lock.notify()
        try:
            yield
        finally:
            with self._lock:
                self._viewers -= 1

    def _wanted(self) -> bool:
        return self._viewers > 0 or time.monotonic() < self._wanted_until

    def record_sent(self) -> None:
        self._sent_times.append(time.monotonic())

    @staticmethod
    def _rate(times: deque[float], window: float = 3.0) -> float:
        now = time.monotonic()
        recent = [t for t in list(times) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def stream_key(self) -> tuple[int, int, str]:
        """(width, height, frame_id) of the latest frame shown, read together."""
        with self._lock:
            return self.stream_size[0], self.stream_size[1], self.frame_id

    def stats(self) -> dict:
        return {
            "width": self.stream_size[0],
            "height": self.stream_size[1],
            "frame_id": self.frame_id,
            "frames_received": self.frames_received,
            "frames_rejected": self.frames_rejected,
            "encoded_fps": round(self._rate(self._encode_times), 2),
            "sent_fps": round(self._rate(self._sent_times), 2),
            "error": self.last_error,
        }

    # ---- encoder thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="teleop-encoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        with self._jpeg_cond:
            self._jpeg_cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    @property
    def stopped(self) -> bool:
        return self._stop

    def _pick(self) -> tuple[int, Any, np.ndarray | None, list[PromptResult]] | None:
        """Choose what to show next (called with the lock held)."""
        now = time.monotonic()
        # Newest mask that has its results and a frame (same stamp, else the newest frame of its size).
        for stamp in reversed(self._masks):
            if self._last_result_stamp is not None and stamp <= self._last_result_stamp:
                break
            if stamp not in self._results:
                continue
            mask = self._masks[stamp]
            frame = self._frames.get(stamp)
            if frame is None:
                frame = next((f for f in reversed(self._frames.values())
                              if (f.height, f.width) == mask.shape), None)
            if frame is None:
                continue
            self._last_result_stamp = stamp
            self._last_overlay_time = now
            return stamp, frame, mask, self._results[stamp]
        if now - self._last_overlay_time < self.overlay_hold_s or not self._frames:
            return None  # masks are flowing: wait for the next one rather than flicker
        stamp = next(reversed(self._frames))
        if stamp == self._last_shown_stamp:
            return None
        return stamp, self._frames[stamp], None, []

    def _run(self) -> None:
        last_encode = -1e9
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stop or self._dirty, timeout=0.25)
                if self._stop:
                    return
                if not self._wanted():
                    self._dirty = False
                    continue
                wait = 1.0 / self.max_fps - (time.monotonic() - last_encode)
                if wait > 0:
                    picked = None
                else:
                    self._dirty = False
                    picked = self._pick()
            if wait > 0:
                time.sleep(wait)
                continue
            if picked is None:
                continue
            stamp, frame, mask, results = picked
            try:
                bgr = to_bgr(frame)
                if mask is not None:
                    bgr = overlay_carried(bgr, results, self.mask_alpha)
                    bgr = overlay_mask(bgr, mask, [r.prompt_id for r in results], self.mask_alpha)
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
                if not ok:
                    raise ValueError("JPEG encoding failed")
            except (ValueError, cv2.error) as exc:
                self.frames_rejected += 1
                self.last_error = str(exc)
                continue
            last_encode = time.monotonic()
            self._last_shown_stamp = stamp
            self._encode_times.append(last_encode)
            with self._jpeg_cond:
                self._jpeg = jpeg.tobytes()
                self._jpeg_seq += 1
                self._jpeg_cond.notify_all()
            with self._lock:
                # More may have arrived while encoding; re-check without waiting.
                self._dirty = self._dirty or bool(self._frames)
