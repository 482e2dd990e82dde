"""The ROS 2 nodes: thin shells (one node class per file) over the ROS-free core."""
