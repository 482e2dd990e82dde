"""Offline evaluation: rosbag2 I/O, the node's pipeline replayed over a bag, reports, COCO <-> bag."""
