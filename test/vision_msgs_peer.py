"""A vision_msgs consumer for the tests, run as its own process (it needs the test interface
package on its paths, which the test process was started without).

    python test/vision_msgs_peer.py TOPIC pkg/msg/Type

Prints one JSON line per message received on TOPIC (reliable QoS): the message as nested
dicts (field name -> value), until stdin closes.
"""

from __future__ import annotations

import importlib
import json
import sys

import rclpy
from node_helpers import spin_until_stdin_closes
from rclpy.qos import QoSProfile


def as_dict(value):
    if hasattr(value, "get_fields_and_field_types"):
        return {name: as_dict(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if hasattr(value, "tolist"):  # numpy arrays (fixed-size fields) and array.array (sequences)
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [as_dict(v) for v in value]
    if isinstance(value, bytes):
        return list(value)
    return value


def main() -> int:
    topic, type_name = sys.argv[1], sys.argv[2]
    package, _, name = type_name.split("/")
    msg_type = getattr(importlib.import_module(f"{package}.msg"), name)
    rclpy.init()
    node = rclpy.create_node("vision_msgs_peer")

    def callback(msg) -> None:
        print(json.dumps(as_dict(msg)), flush=True)

    node.create_subscription(msg_type, topic, callback, QoSProfile(depth=50))

    spin_until_stdin_closes(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
