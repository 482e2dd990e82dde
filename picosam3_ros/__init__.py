"""PicoSAM3-ROS: promptable in-sensor segmentation for ROS 2.

Outside ROS, the model is one call: ``picosam3_ros.Predictor().predict(image_rgb, boxes)``.

Layers, each importing only the ones below it in docs/architecture.md's tree:

- ``core``: crop rule, post-processing, pipeline, prompts, metrics, image conversion,
  sensor geometry, model card, the backend interface and registry, the Predictor, the demo
  clip reader. Plain Python: no rclpy, no torch.
- ``emulator``: an emulated picamera2 + IMX500 for machines without the AI Camera.
- ``backends``: the built-in backends, registered (``onnx`` on the CPU, ``imx500`` on the
  sensor), the plain camera, the ROI policy and the frame server.
- ``evaluation``: rosbag2 I/O, bag evaluation, reports, COCO <-> bag.
- ``teleop``: the operator web page's server, frames and prompt book (ROS-free).
- ``nodes``: the ROS 2 nodes (one node class per file) and their one parameter table.
- ``demo``: ``make demo``, which starts the nodes as processes and scores them.
"""

# The built-in backends register themselves (core/backend_registry.py) before anything runs, so
# that a name such as "onnx" means the same everywhere; their heavy imports wait until one is built.
from picosam3_ros import backends as _backends  # noqa: E402,F401

__all__ = ["Mask", "Predictor"]


def __getattr__(name: str):
    """``picosam3_ros.Predictor`` / ``Mask`` (core/predictor.py), imported on first use so that
    ``import picosam3_ros`` stays light."""
    if name in __all__:
        from picosam3_ros.core import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'picosam3_ros' has no attribute {name!r}")
