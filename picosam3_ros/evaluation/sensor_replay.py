"""Offline replay of bag frames through the emulated IMX500 (``bag_eval --backend imx500``).

The real ``imx500`` backend runs unchanged on the emulated picamera2 in "step"
mode: every capture exposes the bag frame being evaluated. The sensor serves
one ROI per frame and a new ROI takes effect ``roi_apply_delay`` frames later,
so each prompt is programmed in turn and frames are captured until one comes
back with that prompt's own crop (never another's, nor an earlier crop of the
same prompt id): the result is what the sensor path would deliver on a static
scene, without round-robin gaps.

One camera and one network upload serve the whole run: when the bag's frame size
changes, only the main stream is reconfigured (as picamera2 allows between
``stop()`` and ``start()``), the IMX500 keeps its network.

Following (:class:`FollowReplay`, ``bag_eval --follow --backend imx500``) needs the lag that
step-by-prompt replay hides: every bag frame is shown once, in order, and the node's own
frame server runs on it as on the camera thread and the worker (the ROI for the next frames is
written right after each capture, the sensor's output belongs to the ROI in effect, prompts
share the one ROI per frame, NOT_SERVED entries carry their last mask). The emulator and the
backend share a virtual clock that moves one frame time per frame, so the apply delay is exact
in frames however slow the host is.
"""

from __future__ import annotations

import time

import numpy as np

from picosam3_ros.core.carry import LastResults
from picosam3_ros.core.crop import InvalidRoiError, crop_rect_for_box
from picosam3_ros.core.follow import FollowSettings
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, sensor_frame_results
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess
from picosam3_ros.core.sensor_geometry import roi_as_latched
from picosam3_ros.emulator.sources import FrameSource

# Frames the emulated sensor may take beyond the apply delay before a prompt is reported unserved.
EXTRA_FRAMES = 30
# The emulated sensor's frame rate. In step mode the sensor waits for its consumer, so the rate
# only sets how long a frame lasts when the host is quick; results do not depend on it.
REPLAY_FPS = 200.0


def emulated_imx500(model_dir, network_file: str, size: tuple[int, int], fps: float, roi_apply_delay: int,
                    source: FrameSource, clock=None):
    """The real ``imx500`` backend, started, on the emulated camera in step mode showing ``source``
    (``clock``: a virtual clock shared by the emulator and the backend, see :class:`FollowReplay`)."""
    from picosam3_ros.backends import BackendConfig, create_backend

    emulator = {"source": source, "mode": "step", "loop": True}
    if clock is not None:
        emulator["clock"] = clock
    config = BackendConfig(
        model_dir=model_dir,
        network_file=network_file,
        camera="emulator",
        stream_size=size,
        frame_rate=fps,
        roi_apply_delay_frames=roi_apply_delay,
        emulator=emulator,
    )
    backend = create_backend("imx500", config)
    backend.start()
    return backend


class HeldFrame(FrameSource):
    """An endless source that shows whatever frame is set (the bag frame under evaluation)."""

    def __init__(self) -> None:
        self.image: np.ndarray | None = None

    def __len__(self) -> int:
        return 1 << 40

    def frame(self, index: int) -> np.ndarray:
        if self.image is None:
            return np.zeros((480, 640, 3), np.uint8)
        return self.image


class SensorReplay:
    """Segment bag frames on the emulated sensor, one ROI at a time."""

    def __init__(
        self,
        model_dir,
        network_file: str = "",
        postprocess: Postprocess = RAW_POSTPROCESS,
        roi_apply_delay: int = 2,
        fps: float = REPLAY_FPS,
    ):
        self.model_dir = model_dir
        self.network_file = network_file
        self.postprocess = postprocess
        self.roi_apply_delay = roi_apply_delay
        self.fps = fps
        self.source = HeldFrame()
        self.backend = None

    def _ensure_backend(self, size: tuple[int, int]) -> None:
        """Open the camera once (loading the network once); later sizes only reconfigure the stream."""
        if self.backend is not None:
            self.backend.set_stream_size(size)
            return
        self.backend = emulated_imx500(self.model_dir, self.network_file, size, self.fps,
                                       self.roi_apply_delay, self.source)

    def segment(self, frame_rgb: np.ndarray, prompts: list[Prompt]) -> list[PromptResult]:
        height, width = frame_rgb.shape[:2]
        self._ensure_backend((width, height))
        self.source.image = frame_rgb
        results = []
        for prompt in prompts:
            try:
                rect = crop_rect_for_box(prompt.box_xywh, (width, height))
            except InvalidRoiError as exc:
                results.append(
                    PromptResult(prompt.prompt_id, Status.INVALID_ROI, backend="imx500", detail=str(exc))
                )
                continue
            self.backend.request_roi(rect, prompt.prompt_id, prompt.box_xywh)
            roi_sensor = roi_as_latched(self.backend.geometry.stream_rect_to_sensor(rect))
            result = None
            for _ in range(self.roi_apply_delay + EXTRA_FRAMES):
                frame = self.backend.next_frame(timeout_s=5.0)
                inference = None if frame is None else frame.inference
                # The prompt id alone is not enough: every `roi`-topic prompt has id 0, so the ROI
                # of the previous bag frame would be taken for this one. Wait for this very crop
                # (and sensor ROI: the same crop of a frame of another size is another ROI).
                if (
                    inference is None
                    or inference.prompt_id != prompt.prompt_id
                    or inference.requested_crop != rect
                    or inference.roi_sensor != roi_sensor
                ):
                    continue
                result = sensor_frame_results(frame, [prompt], self.postprocess, self.backend.name)[0]
                break
            if result is None:
                result = PromptResult(
                    prompt.prompt_id,
                    Status.BACKEND_ERROR,
                    backend="imx500",
                    detail="the emulated sensor never served this ROI",
                )
            results.append(result)
        return results

    def close(self) -> None:
        if self.backend is not None:
            self.backend.stop()
            self.backend = None


class VirtualClock:
    """A monotonic clock (ns) that only moves when told: the replay's, shared by emulator and backend."""

    def __init__(self, start_ns: int = 1_000_000_000):
        self.now_ns = int(start_ns)

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += int(ns)


# The ROI is written this long after the frame it follows starts (well inside one frame time).
WRITE_AFTER_NS = 1_000_000


class FollowReplay:
    """Bag frames through the emulated sensor in order, each once, with the ROI lag (see module doc).

    ``fps`` is the emulated camera's rate (the virtual clock moves 1/fps per frame); the lag in
    frames is ``roi_apply_delay`` + 1, whatever the rate.
    """

    def __init__(
        self,
        model_dir,
        network_file: str = "",
        postprocess: Postprocess = RAW_POSTPROCESS,
        roi_apply_delay: int = 2,
        fps: float = 30.0,
        follow: bool = True,
        follow_settings: FollowSettings | None = None,
        roi_policy: str = "staleness",
    ):
        from picosam3_ros.backends.frame_server import FrameServer

        self.model_dir = model_dir
        self.network_file = network_file
        self.roi_apply_delay = roi_apply_delay
        self.fps = fps
        self.clock = VirtualClock()
        self.source = HeldFrame()
        self.backend = None
        self._make_server = lambda sensor: FrameServer(
            None, sensor, postprocess, roi_policy, follow, follow_settings
        )
        self.server = None
        self.carry: LastResults[int] = LastResults()
        self._frame_ns = round(1e9 / fps)
        self._next_start: int | None = None  # frames start exactly one frame time apart
        self.host_ms: list[float] = []  # per frame: programming the next ROI + serving the frame

    def _ensure_backend(self, size: tuple[int, int]) -> None:
        if self.backend is not None:
            if tuple(self.backend.stream_size) != size:
                self.backend.set_stream_size(size)
            return
        self.backend = emulated_imx500(self.model_dir, self.network_file, size, self.fps,
                                       self.roi_apply_delay, self.source, self.clock)
        self.server = self._make_server(self.backend)

    def segment(self, frame_rgb: np.ndarray, prompts: list[Prompt]) -> list[PromptResult]:
        height, width = frame_rgb.shape[:2]
        self._ensure_backend((width, height))
        self.source.image = frame_rgb
        if self._next_start is None:
            self._next_start = self.clock() + self._frame_ns
        self.clock.now_ns = max(self.clock(), self._next_start)
        start = self.clock()
        frame = self.backend.next_frame(timeout_s=5.0)
        if frame is None:
            return [PromptResult(p.prompt_id, Status.BACKEND_ERROR, backend="imx500",
                                 detail="the emulated sensor gave no frame") for p in prompts]
        self._next_start = start + self._frame_ns
        self.clock.advance(WRITE_AFTER_NS)
        started = time.perf_counter()
        error = self.server.program_next_roi(prompts, sequence=frame.sequence)  # the camera thread
        frame.error = frame.error or error or None
        served = self.server.serve_frame(frame, prompts)  # the worker
        self.host_ms.append((time.perf_counter() - started) * 1e3)
        carried = self.carry.carry(served.results, frame.sequence, [p.prompt_id for p in prompts])
        return [result for result, _ in carried]

    def close(self) -> None:
        if self.backend is not None:
            self.backend.stop()
            self.backend = None


def sensor_segmenter(
    model_dir,
    onnx_file: str = "",
    postprocess: Postprocess = RAW_POSTPROCESS,
    roi_apply_delay: int = 2,
    fps: float = REPLAY_FPS,
    follow: bool = False,
    follow_settings: FollowSettings | None = None,
):
    """(segment function, network path) for bag_eval: the emulated IMX500 path (``follow``: in
    order with the ROI lag, :class:`FollowReplay` at 30 fps; else held frames, :class:`SensorReplay`)."""
    if follow:
        replay = FollowReplay(model_dir, onnx_file, postprocess, roi_apply_delay, 30.0, True, follow_settings)
    else:
        replay = SensorReplay(model_dir, onnx_file, postprocess, roi_apply_delay, fps)
    from picosam3_ros.backends import BackendConfig
    from picosam3_ros.backends.imx500_backend import resolve_network_file

    network = resolve_network_file(
        BackendConfig(model_dir=model_dir, network_file=onnx_file, camera="emulator")
    )
    return replay.segment, str(network)
