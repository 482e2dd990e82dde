"""The operator web page: HTTP server, frame stream and prompt book (ROS-free; the node is in ``nodes``)."""
