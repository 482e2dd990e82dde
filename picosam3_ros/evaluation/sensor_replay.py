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
"""

from __future__ import annotations

import numpy as np

from picosam3_ros.core.crop import InvalidRoiError, crop_rect_for_box
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, sensor_frame_results
from picosam3_ros.core.sensor_geometry import roi_as_latched
from picosam3_ros.emulator.sources import FrameSource

# Frames the emulated sensor may take beyond the apply delay before a prompt is reported unserved.
EXTRA_FRAMES = 30
# The emulated sensor's frame rate. In step mode the sensor waits for its consumer, so the rate
# only sets how long a frame lasts when the host is quick; results do not depend on it.
REPLAY_FPS = 200.0


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
        threshold: float = 0.5,
        roi_apply_delay: int = 2,
        fps: float = REPLAY_FPS,
        box_margin: float | None = None,
    ):
        self.model_dir = model_dir
        self.network_file = network_file
        self.threshold = threshold
        self.box_margin = box_margin
        self.roi_apply_delay = roi_apply_delay
        self.fps = fps
        self.source = HeldFrame()
        self.backend = None

    def _ensure_backend(self, size: tuple[int, int]) -> None:
        """Open the camera once (loading the network once); later sizes only reconfigure the stream."""
        if self.backend is not None:
            self.backend.set_stream_size(size)
            return
        from picosam3_ros.backends import BackendConfig, create_backend

        config = BackendConfig(
            model_dir=self.model_dir,
            network_file=self.network_file,
            camera="emulator",
            stream_size=size,
            frame_rate=self.fps,
            roi_apply_delay_frames=self.roi_apply_delay,
            emulator={"source": self.source, "mode": "step", "loop": True},
        )
        self.backend = create_backend("imx500", config)
        self.backend.start()

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
                result = sensor_frame_results(
                    frame, [prompt], self.threshold, box_margin=self.box_margin
                )[0]
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


def sensor_segmenter(
    model_dir,
    onnx_file: str = "",
    threshold: float = 0.5,
    roi_apply_delay: int = 2,
    fps: float = REPLAY_FPS,
    box_margin: float | None = None,
):
    """(segment function, network path) for bag_eval: the emulated IMX500 path."""
    replay = SensorReplay(model_dir, onnx_file, threshold, roi_apply_delay, fps, box_margin)
    from picosam3_ros.backends import BackendConfig
    from picosam3_ros.backends.imx500_backend import resolve_network_file

    network = resolve_network_file(
        BackendConfig(model_dir=model_dir, network_file=onnx_file, camera="emulator")
    )
    return replay.segment, str(network)
