"""The small interface every backend implements (ROS-free).

Two kinds of backend fit one node:

* :class:`CropSegmenter` ("segment these crops of this frame"): the CPU path.
  The node owns no camera or reads one; for every frame it cuts one 96x96 crop
  per prompt (``picosam3_ros.core.crop``) and calls :meth:`CropSegmenter.infer` once
  with all of them. ``onnx`` is one.
* :class:`SensorFrameSource` ("a camera that segments one ROI per frame"): the
  sensor path. The backend owns the camera; the node asks for the next ROI with
  :meth:`SensorFrameSource.request_roi` and receives :class:`SensorFrame` objects
  that carry the stream image *and* the network output for the ROI that was in
  effect for that very frame (a new ROI takes effect some frames later).
  ``imx500`` is one. Its frames also feed the CPU path when the sensor fails.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from picosam3_ros.core.crop import CropRect


class BackendError(RuntimeError):
    """The backend cannot run (at start-up or on one frame)."""


class ModelLoadError(BackendError):
    """The model is missing or unreadable; the message tells the user what to do."""


class ModelMismatchError(ModelLoadError):
    """The model card contradicts the model it names: fatal at start-up, never a reason to fall back."""


@dataclass
class BackendConfig:
    """What a backend needs; the node fills it from its parameters.

    model_dir: directory with ``model_card.json`` (default: the packaged models).
    onnx_model: explicit ONNX file overriding the card's "fp32"/"int8" file ('' = from the card).
    onnx_precision: "fp32" or "int8": which ONNX file of the card the CPU backend runs.
    network_file: IMX500 network (.rpk, or packerOut.zip/ONNX for the emulator); '' = from the card.
    threads: ONNX Runtime intra-op threads (0 = ORT default).
    camera: "picamera2" or "emulator" (sensor backends only).
    stream_size: (width, height) of the published image_raw stream.
    frame_rate: camera frame rate (frames/s).
    roi_apply_delay_frames: frames between set_inference_roi_abs and the first frame using it.
    output_transpose: the picamera2 Fortran-order reshape yields (W, H); transpose back to (H, W).
    emulator: keyword arguments for ``picosam3_ros.emulator.configure`` (camera == "emulator").
    """

    model_dir: Path | None = None
    onnx_model: str = ""
    onnx_precision: str = "fp32"
    network_file: str = ""
    threads: int = 0
    camera: str = "emulator"
    stream_size: tuple[int, int] = (640, 480)
    frame_rate: float = 30.0
    roi_apply_delay_frames: int = 2
    output_transpose: bool = True
    emulator: dict = field(default_factory=dict)


class CropSegmenter(abc.ABC):
    """Segment a batch of 96x96 crops (one batched network call)."""

    name: str = "base"

    @property
    @abc.abstractmethod
    def input_size(self) -> int:
        """Side of the square network input (96)."""

    @abc.abstractmethod
    def infer(self, crops_rgb: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB crops -> float32 (N, S, S) logits (> 0 = object).

        N may be 0 (returns an empty (0, S, S) array). Raises BackendError on failure.
        """

    def close(self) -> None:
        """Release resources (idempotent)."""


@dataclass
class SensorInference:
    """The sensor's network output for one frame.

    roi_sensor: the ROI in effect for this frame, full-sensor pixels (x, y, w, h).
    crop: the same ROI in pixels of the stream image (what the mask is pasted into).
    prompt_id: the prompt that ROI was requested for (None: the default full-sensor ROI).
    logits: float32 (S, S) network output, row-major (H, W) orientation.
    dnn_ms / dsp_ms: on-sensor KPI timings (None when the sensor gives none).
    requested_crop: the stream crop the host asked for with that ROI (``crop`` is its
        round trip through the sensor's pixel grid); None for the default ROI.
    box_xywh: the prompt box that crop was made from (for the box-aware post-processing
        and for attributing the output when the prompt has moved since).
    """

    roi_sensor: tuple[int, int, int, int]
    crop: CropRect | None
    prompt_id: int | None
    logits: np.ndarray | None
    dnn_ms: float | None = None
    dsp_ms: float | None = None
    requested_crop: CropRect | None = None
    box_xywh: tuple[float, float, float, float] | None = None


@dataclass
class SensorFrame:
    """One frame from a camera-owning backend.

    sequence: frame number since start (derived from sensor timestamps, so gaps are dropped frames).
    sensor_timestamp_ns: the sensor's timestamp (start of exposure), ns, camera clock.
    image_rgb: uint8 (H, W, 3) RGB stream image.
    inference: the network output for this frame, or None (no tensor on this frame).
    error: a sensor-side failure on this frame (image is still usable by the CPU path).
    """

    sequence: int
    sensor_timestamp_ns: int
    image_rgb: np.ndarray
    inference: SensorInference | None = None
    error: str | None = None


class SensorFrameSource(abc.ABC):
    """A camera that runs the network on one ROI per frame.

    ``runs_network`` is False for a plain camera behind the same interface (its frames
    carry no inference; the CPU path serves them and ``request_roi`` does nothing).
    """

    name: str = "sensor"
    runs_network: bool = True

    @property
    @abc.abstractmethod
    def stream_size(self) -> tuple[int, int]:
        """(width, height) of the stream images."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start streaming (after the network is loaded)."""

    @abc.abstractmethod
    def next_frame(self, timeout_s: float = 1.0) -> SensorFrame | None:
        """Block for the next frame; None on timeout. Raises BackendError when the camera is gone."""

    @abc.abstractmethod
    def request_roi(
        self,
        crop: CropRect | None,
        prompt_id: int | None,
        box_xywh: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Program the next ROI (stream pixels; None = full frame). Takes effect a few frames later.

        ``box_xywh`` is the prompt box ``crop`` was made from; it comes back with the output.
        """

    @property
    def roi_apply_delay_frames(self) -> int:
        return 0

    def pause(self) -> None:
        """Stop streaming but keep the camera and its network loaded; ``start`` resumes (idempotent)."""

    def stop(self) -> None:
        """Stop streaming and release the camera (idempotent)."""
