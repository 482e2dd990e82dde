"""A stand-in detector for test_detections_adapter.py, run as its own process (it needs the
test interface package on its paths, which the test process was started without).

    python test/detections_peer.py NONCE

Reads phase names from stdin ("A", "B", "empty"; EOF ends it) and publishes that phase's
picosam3_test_vision_msgs/Detection2DArray on ``detections`` every 0.1 s, header.frame_id = NONCE.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from node_helpers import spin_until_stdin_closes
from rclpy.qos import QoSProfile

# phase -> [(class, score, track id, (centre x, centre y, width, height))]
PHASES = {
    "A": [
        ("person", 0.9, "track-a", (100.0, 80.0, 40.0, 60.0)),
        ("cup", 0.8, "track-b", (300.5, 200.5, 21.0, 10.0)),
        ("person", 0.3, "track-c", (50.0, 50.0, 10.0, 10.0)),  # under min_score
        ("dog", 0.95, "track-d", (400.0, 300.0, 50.0, 50.0)),  # not a wanted class
    ],
    "B": [  # other order, moved boxes, a new track
        ("person", 0.7, "track-e", (500.0, 100.0, 30.0, 30.0)),
        ("cup", 0.85, "track-b", (310.0, 210.0, 20.0, 10.0)),
        ("person", 0.95, "track-a", (110.0, 90.0, 40.0, 60.0)),
    ],
    "empty": [],
}


def vision_array(msgs: Any, nonce: str, detections: list) -> Any:
    """A Detection2DArray of ``msgs`` (a vision_msgs 4.x layout message module) in frame ``nonce``
    from (class, score, track id, (centre x, centre y, width, height)) tuples."""
    out = msgs.Detection2DArray()
    out.header.frame_id = nonce
    for class_id, score, track, (cx, cy, w, h) in detections:
        det = msgs.Detection2D(id=track)
        det.header = out.header
        det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
        det.bbox.size_x, det.bbox.size_y = w, h
        hypothesis = msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = class_id, score
        det.results.append(hypothesis)
        out.detections.append(det)
    return out


def message(nonce: str, phase: str) -> Any:
    import picosam3_test_vision_msgs.msg as msgs

    return vision_array(msgs, nonce, PHASES[phase])


def main() -> int:
    nonce = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("detections_peer")
    pub = node.create_publisher(type(message(nonce, "A")), "detections", QoSProfile(depth=10))
    phase = ["A"]

    def set_phase(line: str) -> None:
        if line in PHASES:
            phase[0] = line

    node.create_timer(0.1, lambda: pub.publish(message(nonce, phase[0])))
    spin_until_stdin_closes(node, set_phase)
    return 0


if __name__ == "__main__":
    sys.exit(main())
