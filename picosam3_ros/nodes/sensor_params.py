"""The sensor node's parameter table and its typed config (``sensor_node.py`` reads both).

Every default is written once, in :data:`SENSOR_PARAMS`; :class:`NodeConfig` has a field per
row and no defaults of its own, so a config always comes from the table (:func:`validate`).
``config/sensor.yaml`` and ``launch/sensor.launch.py`` repeat no value the table does not have
(test/test_robot_core.py checks both against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from picosam3_ros.backends import BACKENDS, backend_names
from picosam3_ros.backends.roi_scheduler import POLICIES
from picosam3_ros.core.backend_api import BackendConfig
from picosam3_ros.core.compressed_guard import DEFAULT_MAX_PIXELS
from picosam3_ros.core.model_card import postprocess_in_use
from picosam3_ros.core.postprocess import Postprocess
from picosam3_ros.nodes.node_config import IMAGE_INPUT_PARAMS, Param, ParamTable, type_name_check

CAMERA_CHOICES = ("none", "picamera2", "emulator")
PRECISION_CHOICES = ("fp32", "int8")
EMULATOR_MODES = ("realtime", "step")
OUTPUT_QOS_CHOICES = ("reliable", "sensor_data")


def _threshold_check(value: float) -> str | None:
    if 0.0 <= value < 1.0:
        return None
    return "parameter 'threshold' must be 0.0 (the model card's) or between 0 and 1"


def _box_margin_check(value: float) -> str | None:
    if value == -1.0 or value >= 0.0:
        return None
    return f"parameter 'box_margin' is {value}; use -1.0 (the model card's) or a value >= 0"


def _sensor_cross_check(values: Mapping[str, Any]) -> str | None:
    backend = values.get("backend")
    if backend in BACKENDS and BACKENDS[backend].needs_camera and values.get("camera", "none") == "none":
        return f"backend '{backend}' needs the camera: set camera to picamera2 or emulator"
    return None


def _backend_choices() -> tuple[str, ...]:
    return backend_names(auto=True)


SENSOR_PARAMS = ParamTable(
    [
        Param("backend", "auto", "auto | a registered backend (picosam3_ros/backends/__init__.py: imx500 "
              "on the AI Camera, onnx on the CPU); auto: the sensor when the camera is there",
              _backend_choices),
        Param("camera", "none", "none (subscribe to `image`) | picamera2 | emulator", CAMERA_CHOICES),
        Param("model", "", "directory with model_card.json (or the card file); '' = the packaged model"),
        Param("onnx_precision", "fp32", "CPU backend model: fp32 | int8 file of the model card",
              PRECISION_CHOICES),
        Param("onnx_model", "", "explicit ONNX file for the CPU backend (overrides the card's file)"),
        Param("network_file", "", "IMX500 network (.rpk); '' = from the model card"),
        Param("threshold", 0.0,
              "object probability threshold (0..1); 0.0 = the model card's (0.5 without one)",
              (0.0, 1.0), True, _threshold_check),
        Param("box_margin", -1.0,
              "masks are clipped to the prompt box grown by this fraction of its size; "
              "-1.0 = the model card's (no clip without one); 1000.0 = keep all the network outputs",
              (-1.0, 1000.0), True, _box_margin_check),
        Param("max_prompts", 16, "prompts kept at once; more are reported TOO_MANY_PROMPTS", (1, 255), True),
        Param("prompt_timeout", 2.0,
              "seconds after which an unrefreshed prompt is stale and dropped (0.0 = never; publishers "
              "repeat their sets)", (0.0, 86400.0), True),
        Param("threads", 0, "ONNX Runtime intra-op threads (0 = ONNX Runtime's default)", (0, 64)),
        Param("overlay", False, "also publish `overlay` (rgb8 frame with the masks tinted)", None, True),
        Param("carry_results", True,
              "entries of prompts the sensor did not serve on a frame (NOT_SERVED) carry the prompt's "
              "last mask, with the header of the frame it was computed on", None, True),
        *IMAGE_INPUT_PARAMS,
        Param("output_qos", "reliable",
              "QoS of image_raw, camera_info, mask, segmentations, overlay: reliable (what default "
              "subscribers such as rviz and recorders ask for; best-effort ones match too) | sensor_data",
              OUTPUT_QOS_CHOICES),
        Param("max_image_pixels", DEFAULT_MAX_PIXELS,
              "input frames larger than this (width x height, from a compressed payload's header before "
              "decoding) are dropped as bad images; the default is 4096x4096", (1, 2**30), True),
        Param("input_warn_fraction", 0.5,
              "WARN on /diagnostics (and log the fix once) when fewer than this fraction of the "
              "publisher's frames arrive", (0.0, 1.0), True),
        Param("frame_id", "camera", "frame_id of image_raw when the node owns the camera"),
        Param("stream_width", 640, "image_raw width when the node owns the camera (px)", (16, 4056)),
        Param("stream_height", 480, "image_raw height when the node owns the camera (px)", (16, 3040)),
        Param("frame_rate", 30.0, "camera frame rate (frames/s)", (0.5, 240.0)),
        Param("roi_apply_delay_frames", 2, "frames before a new IMX500 ROI reaches the network", (0, 30)),
        Param("imx500_output_transpose", True,
              "transpose the sensor output (picamera2's Fortran-order reshape)"),
        Param("roi_policy", "staleness", "which prompt the sensor serves next: round_robin | staleness",
              POLICIES, True),
        Param("follow", True,
              "prompts follow their object from frame to frame (the box moves with the masks; "
              "RoiPrompt.follow overrides it per prompt; docs/following.md)", None, True),
        Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.1, 60.0)),
        Param("detections_type", "vision_msgs/msg/Detection2DArray",
              "also publish `detections` (the box each mask was made for, the prompt id as id, the mask "
              "score) as this vision_msgs-like type when it is installed ('' = off; absent: off with one "
              "log line)", check=type_name_check("detections_type", allow_empty=True)),
        Param("lifecycle", False,
              "a managed (lifecycle) node: start unconfigured and wait for configure (load the model) "
              "and activate (camera, subscriptions, publishing) through change_state; false = run at once"),
        Param("emulator.source", "",
              "emulator frames: image folder/file, video, rosbag, '' = synthetic scene"),
        Param("emulator.mode", "realtime", "emulator timing: realtime | step", EMULATOR_MODES),
        Param("emulator.loop", True, "emulator: restart the source at its end"),
        Param("emulator.roi_delay_frames", -1, "emulated ROI apply delay (-1 = roi_apply_delay_frames)",
              (-1, 30)),
        Param("emulator.fail_after_frames", -1, "emulated network stops after this many frames (-1 = never)",
              (-1, 10**9)),
        Param("emulator.ground_truth_log", "", "emulator: JSON-lines log of the ROI in effect per frame"),
        Param("emulator.network_onnx", "",
              "emulator: ONNX run as the on-sensor network ('' = card int8/fp32)"),
    ],
    _sensor_cross_check,
)


@dataclass(frozen=True)
class NodeConfig:
    """The sensor node's parameters in force, one field per row of SENSOR_PARAMS (the emulator.*
    rows as one dict); only :func:`validate` builds it."""

    backend: str
    camera: str
    model: str
    onnx_precision: str
    onnx_model: str
    network_file: str
    threshold: float
    box_margin: float
    max_prompts: int
    prompt_timeout: float
    threads: int
    overlay: bool
    carry_results: bool
    image_transport: str
    image_qos: str
    output_qos: str
    max_image_pixels: int
    input_warn_fraction: float
    frame_id: str
    stream_width: int
    stream_height: int
    frame_rate: float
    roi_apply_delay_frames: int
    imx500_output_transpose: bool
    roi_policy: str
    follow: bool
    diagnostics_period: float
    detections_type: str
    lifecycle: bool
    emulator: dict

    def postprocess(self) -> Postprocess:
        """The threshold and box margin in use: these parameters over the model card's."""
        return postprocess_in_use(
            self.model or None,
            self.threshold if self.threshold > 0.0 else None,
            self.box_margin if self.box_margin >= 0.0 else None,
        )

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

    def values(self) -> dict[str, Any]:
        """The parameter values in force, except the emulator.* group (start-up only)."""
        return {k: getattr(self, k) for k in SENSOR_PARAMS.params if not k.startswith("emulator.")}


def validate(values: Mapping[str, Any]) -> NodeConfig:
    """Check every value against SENSOR_PARAMS and build the config (raises ConfigError)."""
    merged = SENSOR_PARAMS.validate(values)
    plain = {k: v for k, v in merged.items() if not k.startswith("emulator.")}
    delay = merged["emulator.roi_delay_frames"]
    emulator = {
        "source": merged["emulator.source"],
        "mode": merged["emulator.mode"],
        "loop": merged["emulator.loop"],
        "fail_after_frames": merged["emulator.fail_after_frames"],
        "ground_truth_log": merged["emulator.ground_truth_log"],
        "network_onnx": merged["emulator.network_onnx"],
        "fps": plain["frame_rate"],
        "roi_delay_frames": plain["roi_apply_delay_frames"] if delay < 0 else delay,
    }
    return NodeConfig(**plain, emulator=emulator)


def declare_and_read(node) -> NodeConfig:
    """Declare every sensor parameter on ``node`` (rclpy) and return the validated config."""
    return validate(SENSOR_PARAMS.declare(node))
