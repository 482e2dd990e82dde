"""The sensor node's parameters: declared with descriptors, validated, read once into a typed config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picosam3_ros.core.backend_api import BackendConfig
from picosam3_ros.backends.roi_scheduler import POLICIES

BACKEND_CHOICES = ("auto", "imx500", "onnx")
CAMERA_CHOICES = ("none", "picamera2", "emulator")
PRECISION_CHOICES = ("fp32", "int8")
EMULATOR_MODES = ("realtime", "step")


class ConfigError(ValueError):
    """A parameter value is invalid; the message names it and the allowed values."""


# name -> (default, description, (min, max) or choices or None)
PARAMETERS: dict[str, tuple[Any, str, Any]] = {
    "backend": ("auto", "auto | imx500 | onnx (auto: imx500 when the camera is there)", BACKEND_CHOICES),
    "camera": ("none", "none (subscribe to `image`) | picamera2 | emulator", CAMERA_CHOICES),
    "model": ("", "directory with model_card.json (or the card file); '' = the packaged model", None),
    "onnx_precision": ("fp32", "CPU backend model: fp32 | int8 file of the model card", PRECISION_CHOICES),
    "onnx_model": ("", "explicit ONNX file for the CPU backend (overrides the card's file)", None),
    "network_file": ("", "IMX500 network (.rpk); '' = from the model card", None),
    "threshold": (0.5, "object probability threshold (0..1)", (0.0, 1.0)),
    "max_prompts": (16, "prompts kept at once; more are reported TOO_MANY_PROMPTS", (1, 255)),
    "prompt_timeout": (
        2.0,
        "seconds after which an unrefreshed prompt is stale and dropped (0 = never; publishers repeat sets)",
        (0.0, 86400.0),
    ),
    "threads": (0, "ONNX Runtime intra-op threads (0 = ONNX Runtime's default)", (0, 64)),
    "overlay": (False, "also publish `overlay` (rgb8 frame with the masks tinted)", None),
    "frame_id": ("camera", "frame_id of image_raw when the node owns the camera", None),
    "stream_width": (640, "image_raw width when the node owns the camera (px)", (16, 4056)),
    "stream_height": (480, "image_raw height when the node owns the camera (px)", (16, 3040)),
    "frame_rate": (30.0, "camera frame rate (frames/s)", (0.5, 240.0)),
    "roi_apply_delay_frames": (2, "frames before a new IMX500 ROI reaches the network", (0, 30)),
    "imx500_output_transpose": (
        True,
        "transpose the sensor output (picamera2's Fortran-order reshape)",
        None,
    ),
    "roi_policy": ("staleness", "which prompt the sensor serves next: round_robin | staleness", POLICIES),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages", (0.1, 60.0)),
    "emulator.source": ("", "emulator frames: image folder/file, video, rosbag, '' = synthetic scene", None),
    "emulator.mode": ("realtime", "emulator timing: realtime | step", EMULATOR_MODES),
    "emulator.loop": (True, "emulator: restart the source at its end", None),
    "emulator.roi_delay_frames": (-1, "emulated ROI apply delay (-1 = roi_apply_delay_frames)", (-1, 30)),
    "emulator.fail_after_frames": (
        -1,
        "emulated network stops after this many frames (-1 = never)",
        (-1, 10**9),
    ),
    "emulator.ground_truth_log": ("", "emulator: JSON-lines log of the ROI in effect per frame", None),
    "emulator.network_onnx": ("", "emulator: ONNX run as the on-sensor network ('' = card int8/fp32)", None),
}


@dataclass(frozen=True)
class NodeConfig:
    backend: str = "auto"
    camera: str = "none"
    model: str = ""
    onnx_precision: str = "fp32"
    onnx_model: str = ""
    network_file: str = ""
    threshold: float = 0.5
    max_prompts: int = 16
    prompt_timeout: float = 2.0
    threads: int = 0
    overlay: bool = False
    frame_id: str = "camera"
    stream_width: int = 640
    stream_height: int = 480
    frame_rate: float = 30.0
    roi_apply_delay_frames: int = 2
    imx500_output_transpose: bool = True
    roi_policy: str = "staleness"
    diagnostics_period: float = 1.0
    emulator: dict = field(default_factory=dict)

    def backend_config(self) -> BackendConfig:
        return BackendConfig(
            model_dir=Path(self.model) if self.model else None,
            onnx_model=self.onnx_model,
            onnx_precision=self.onnx_precision,
            network_file=self.network_file,
            threads=self.threads,
            camera=self.camera,
            stream_size=(self.stream_width, self.stream_height),
            frame_rate=self.frame_rate,
            roi_apply_delay_frames=self.roi_apply_delay_frames,
            output_transpose=self.imx500_output_transpose,
            emulator=dict(self.emulator),
        )


def validate(values: dict[str, Any]) -> NodeConfig:
    """Check every value against PARAMETERS and build the config (raises ConfigError)."""
    for name, (default, _, limits) in PARAMETERS.items():
        value = values.get(name, default)
        if isinstance(limits, tuple) and limits and isinstance(limits[0], str):
            if value not in limits:
                raise ConfigError(f"parameter '{name}' is {value!r}; allowed: {', '.join(limits)}")
        elif isinstance(limits, tuple) and not isinstance(value, bool):
            low, high = limits
            if not low <= value <= high:
                raise ConfigError(f"parameter '{name}' is {value!r}; allowed range [{low}, {high}]")
    if not 0.0 < values.get("threshold", 0.5) < 1.0:
        raise ConfigError("parameter 'threshold' must be strictly between 0 and 1")
    if values.get("backend") == "imx500" and values.get("camera", "none") == "none":
        raise ConfigError("backend 'imx500' needs the camera: set camera to picamera2 or emulator")
    plain = {k: values.get(k, d) for k, (d, _, _) in PARAMETERS.items() if not k.startswith("emulator.")}
    emulator = {
        "source": values.get("emulator.source", ""),
        "mode": values.get("emulator.mode", "realtime"),
        "loop": values.get("emulator.loop", True),
        "fail_after_frames": values.get("emulator.fail_after_frames", -1),
        "ground_truth_log": values.get("emulator.ground_truth_log", ""),
        "network_onnx": values.get("emulator.network_onnx", ""),
        "fps": plain["frame_rate"],
    }
    delay = values.get("emulator.roi_delay_frames", -1)
    emulator["roi_delay_frames"] = plain["roi_apply_delay_frames"] if delay < 0 else delay
    return NodeConfig(**plain, emulator=emulator)


def declare_and_read(node) -> NodeConfig:
    """Declare every parameter on ``node`` (rclpy) with a descriptor and return the validated config."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values: dict[str, Any] = {}
    for name, (default, description, limits) in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=description, read_only=True)
        if isinstance(limits, tuple) and limits and isinstance(limits[0], str):
            descriptor.additional_constraints = "one of: " + ", ".join(limits)
        elif isinstance(limits, tuple) and isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=limits[0], to_value=limits[1], step=0)]
        elif isinstance(limits, tuple) and isinstance(default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(limits[0]), to_value=float(limits[1]), step=0.0)
            ]
        try:
            values[name] = node.declare_parameter(name, default, descriptor).value
        except Exception as exc:  # wrong type or out of range from the command line / YAML
            raise ConfigError(f"parameter '{name}': {exc}") from exc
    return validate(values)
