"""The ROS-free core: everything a frame and a prompt go through, with no rclpy and no torch.

Training (``picosam3_train``), evaluation, both backends and the nodes all use these
modules, so that there is one crop rule, one post-processing step and one metric.
"""
