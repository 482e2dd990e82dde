"""A detector for test_readme_examples.py, as its own process (it needs the test message packages
on its paths, which the test process was started without).

    python test/readme_detector_peer.py vision|yolo TOPIC NONCE

Publishes, every 0.1 s until killed, a person (0.9), a cup (0.8) and a dog (0.95) on TOPIC as
vision_msgs/msg/Detection2DArray or yolo_msgs/msg/DetectionArray, header.frame_id = NONCE.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.qos import QoSProfile

DETECTIONS = [("person", 0.9, (160.0, 120.0, 80.0, 80.0)), ("cup", 0.8, (60.0, 60.0, 40.0, 40.0)),
              ("dog", 0.95, (260.0, 60.0, 30.0, 30.0))]  # class, score, (centre x, centre y, w, h)


def vision_message(nonce: str):
    import vision_msgs.msg
    from detections_peer import vision_array

    return vision_array(vision_msgs.msg, nonce, [(c, score, "", box) for c, score, box in DETECTIONS])


def yolo_message(nonce: str):
    from yolo_msgs.msg import Detection, DetectionArray

    out = DetectionArray()
    out.header.frame_id = nonce
    for number, (class_name, score, (cx, cy, w, h)) in enumerate(DETECTIONS):
        det = Detection(class_id=number, class_name=class_name, score=score)
        det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
        det.bbox.size.x, det.bbox.size.y = w, h
        out.detections.append(det)
    return out


def main() -> int:
    kind, topic, nonce = sys.argv[1:4]
    message = (vision_message if kind == "vision" else yolo_message)(nonce)
    rclpy.init()
    node = rclpy.create_node("readme_detector_peer")
    pub = node.create_publisher(type(message), topic, QoSProfile(depth=10))

    def publish() -> None:
        message.header.stamp = node.get_clock().now().to_msg()
        pub.publish(message)

    node.create_timer(0.1, publish)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, Exception):  # SIGINT
        pass
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
