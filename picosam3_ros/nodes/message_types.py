"""Message types loaded by name, and vision_msgs detections written by their fields.

vision_msgs has no wheel for every install (none here), so the nodes never import it: a type
named by a parameter (``pkg/msg/Type``) is loaded when the node starts, and the detections are
filled field by field in vision_msgs 4.x's layout (any package with the same layout works,
which is how the tests run them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Sequence

from picosam3_ros.nodes.node_config import ConfigError


def load_message_type(name: str) -> Any:
    """'pkg/msg/Type' (or 'pkg/Type') -> the Python message class; ConfigError with the fix if absent."""
    parts = name.split("/")
    package, type_name = parts[0], parts[-1]
    try:
        return getattr(importlib.import_module(f"{package}.msg"), type_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load message type '{name}' ({exc}): install it (e.g. apt install "
            f"ros-$ROS_DISTRO-{package.replace('_', '-')}) and source its setup file"
        ) from None


def _element_type(msg_type: Any, field_name: str) -> Any:
    """The message class of a ``sequence<pkg/Type>`` field of ``msg_type``."""
    kind = msg_type.get_fields_and_field_types().get(field_name, "")
    if not kind.startswith("sequence<") or "/" not in kind:
        raise ConfigError(f"{msg_type.__name__} has no '{field_name}' array of messages (found '{kind}')")
    return load_message_type(kind[len("sequence<"):].rstrip(">").split(",")[0])


@dataclass(frozen=True)
class DetectionTypes:
    """A vision_msgs-like detection array type with its detection and hypothesis types."""

    array: Any
    detection: Any
    hypothesis: Any

    @classmethod
    def load(cls, name: str) -> DetectionTypes:
        """``pkg/msg/Detection2DArray`` or ``...Detection3DArray``; ConfigError when it cannot be used."""
        array = load_message_type(name)
        detection = _element_type(array, "detections")
        return cls(array, detection, _element_type(detection, "results"))

    def _detection(self, header: Any, prompt_id: int, score: float) -> Any:
        detection = self.detection(header=header, id=str(prompt_id))
        hypothesis = self.hypothesis()
        hypothesis.hypothesis.score = float(score)  # class_id stays '': a prompt has no class
        detection.results.append(hypothesis)
        return detection

    def boxes_2d(self, header: Any, entries: Sequence[tuple[Any, int, Sequence[float], float]]) -> Any:
        """A Detection2DArray: one detection per (header, prompt id, (x, y, w, h) px, score)."""
        out = self.array(header=header)
        for entry_header, prompt_id, (x, y, w, h), score in entries:
            detection = self._detection(entry_header, prompt_id, score)
            detection.bbox.center.position.x = float(x) + float(w) / 2.0
            detection.bbox.center.position.y = float(y) + float(h) / 2.0
            detection.bbox.size_x, detection.bbox.size_y = float(w), float(h)
            out.detections.append(detection)
        return out

    def boxes_3d(
        self, header: Any, entries: Sequence[tuple[int, Sequence[float], Sequence[float], float]]
    ) -> Any:
        """A Detection3DArray: one detection per (prompt id, extent min, extent max (m), score)."""
        out = self.array(header=header)
        for prompt_id, low, high, score in entries:
            detection = self._detection(header, prompt_id, score)
            center, size = detection.bbox.center.position, detection.bbox.size
            center.x, center.y, center.z = ((float(a) + float(b)) / 2.0 for a, b in zip(low, high))
            size.x, size.y, size.z = (float(b) - float(a) for a, b in zip(low, high))
            detection.bbox.center.orientation.w = 1.0  # axis-aligned in the camera frame
            out.detections.append(detection)
        return out


def optional_detections(name: str, log) -> DetectionTypes | None:
    """The detection types named by a parameter ('' = off), or None with one log line saying why."""
    if not name:
        return None
    try:
        return DetectionTypes.load(name)
    except ConfigError as exc:
        log(f"detections output off: {exc}")
        return None
