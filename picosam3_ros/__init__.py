"""PicoSAM3-ROS: promptable in-sensor segmentation for ROS 2.

The modules here other than the ``*_node`` ones are plain Python (no rclpy)
so that training, evaluation and tests share them.
"""
