"""PicoSAM3-ROS: promptable in-sensor segmentation for ROS 2.

Layers, each importing only the ones above it in this list (see docs/architecture.md):

- ``core``: crop rule, post-processing, pipeline, prompts, metrics, image conversion,
  sensor geometry, model card, the backend interface. Plain Python: no rclpy, no torch.
- ``backends``: the registry and its implementations (``onnx`` on the CPU, ``imx500``
  on the sensor), the plain camera and the ROI policy of the one-ROI sensor.
- ``emulator``: an emulated picamera2 + IMX500 for machines without the AI Camera.
- ``evaluation``: rosbag2 I/O, bag evaluation, reports, COCO <-> bag, the demo clip.
- ``nodes``: the ROS 2 nodes (one node class per file) and their parameter tables.
- ``teleop``: the operator web page's server, frames and prompt book (ROS-free).
- ``demo``: ``make demo``, which starts the nodes as processes and scores them.
"""
