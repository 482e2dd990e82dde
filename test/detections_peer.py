"""A stand-in detector for test_detections_adapter.py, run as its own process (it needs the
test interface package on its paths, which the test process was started without).

    python test/detections_peer.py NONCE

Reads phase names from stdin ("A", "B", "empty", and issue 21's hostile ones: "numbers",
"flood", "ids", "swap"; EOF ends it) and publishes that phase's
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
    # Every number a detector could get wrong, around one valid detection (issue 21).
    "numbers": [
        ("person", 0.5, "ok", (100.0, 80.0, 40.0, 60.0)),
        ("person", 0.9, "big", (1e300, 80.0, 40.0, 60.0)),
        ("person", 0.9, "nan", (float("nan"), 80.0, 40.0, 60.0)),
        ("person", 0.9, "inf", (100.0, float("inf"), 40.0, 60.0)),
        ("person", 0.9, "-inf", (100.0, 80.0, float("-inf"), 60.0)),
        ("person", 0.9, "2^40", (2.0**40, 80.0, 40.0, 60.0)),
        ("person", 0.9, "2^63", (100.0, 2.0**63, 40.0, 60.0)),
        ("person", 0.9, "wrap", (100.0, 80.0, 2.0**32 + 40.0, 60.0)),
        ("person", 0.9, "wide", (100.0, 80.0, 1e10, 60.0)),
        ("person", 0.9, "zero", (100.0, 80.0, 0.0, 60.0)),
        ("person", 0.9, "negative", (100.0, 80.0, -40.0, 60.0)),
        ("person", 0.9, "left of the frame", (-100.0, 80.0, 40.0, 60.0)),
        ("person", float("nan"), "nan score", (100.0, 80.0, 40.0, 60.0)),
        ("person", float("inf"), "inf score", (100.0, 80.0, 40.0, 60.0)),
        ("person", 0.9, "x" * 100_000, (300.0, 200.0, 20.0, 10.0)),  # a 100 kB id: valid, kept short
    ],
    # The same two tracks, their order and an untracked detection swapping each message.
    "swap": [
        ("person", 0.9, "7", (100.0, 80.0, 40.0, 60.0)),
        ("person", 0.8, "1", (300.0, 80.0, 40.0, 60.0)),
        ("person", 0.95, "", (500.0, 80.0, 40.0, 60.0)),
        ("person", 0.7, "7", (110.0, 80.0, 40.0, 60.0)),  # the same track twice: the weaker is dropped
    ],
}
FLOOD = 10_000
IDS_PER_MESSAGE = 30


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


def flood() -> list:
    """10,000 detections; the best one last (only the first max_detections are read)."""
    many = [("person", 0.6, f"f{i}", (float(i % 600), 100.0, 20.0, 30.0)) for i in range(FLOOD - 1)]
    return many + [("person", 0.99, "best", (50.0, 50.0, 10.0, 10.0))]


def message(nonce: str, phase: str, count: int = 0) -> Any:
    import picosam3_test_vision_msgs.msg as msgs

    if phase == "ids":  # unique 100 kB track ids, IDS_PER_MESSAGE new ones per message
        entries = [("person", 0.9, f"{count}-{i}-" + "y" * 100_000, (100.0 + i, 80.0, 40.0, 60.0))
                   for i in range(IDS_PER_MESSAGE)]
    elif phase == "swap" and count % 2:
        entries = [PHASES["swap"][i] for i in (3, 2, 1, 0)]
    else:
        entries = PHASES[phase]
    return vision_array(msgs, nonce, entries)


def main() -> int:
    nonce = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("detections_peer")
    pub = node.create_publisher(type(message(nonce, "A")), "detections", QoSProfile(depth=10))
    phase = ["A"]
    count = [0]
    flood_message = [None]

    def set_phase(line: str) -> None:
        if line in PHASES or line in ("flood", "ids"):
            phase[0] = line

    def publish() -> None:
        count[0] += 1
        if phase[0] == "flood":  # built once: its serialization alone takes a while
            if flood_message[0] is None:
                flood_message[0] = message(nonce, "flood_entries")
            pub.publish(flood_message[0])
        else:
            pub.publish(message(nonce, phase[0], count[0]))

    PHASES["flood_entries"] = flood()
    node.create_timer(0.1, publish)
    spin_until_stdin_closes(node, set_phase)
    return 0


if __name__ == "__main__":
    sys.exit(main())
