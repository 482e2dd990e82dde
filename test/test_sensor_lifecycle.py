"""The sensor node's lifecycle mode, driven through the real lifecycle services over DDS.

``lifecycle:=true``: the node starts unconfigured; configure loads the model (nothing is
published, the camera is not streaming), activate opens the camera and the subscriptions,
deactivate stops them without unloading the model, cleanup frees it, shutdown finalizes.
The node owns an emulated camera (frames on ``image_raw``) and runs the disk model on the CPU.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from node_helpers import REPO, RosClient, node_command, ros_env, start_process, stop_process, write_disk_model

DOMAIN = 15
NODE = "/picosam3_sensor"


class Lifecycle:
    """``ros2 lifecycle set/get`` from the test process: ChangeState and GetState of one node."""

    def __init__(self, client: RosClient, node: str):
        from lifecycle_msgs.srv import ChangeState, GetState

        self.client = client
        self.change = client.node.create_client(ChangeState, f"{node}/change_state")
        self.get = client.node.create_client(GetState, f"{node}/get_state")
        self.ChangeState, self.GetState = ChangeState, GetState

    def _call(self, service, request, timeout: float = 60.0):
        assert service.wait_for_service(timeout_sec=timeout), f"no {service.srv_name}"
        future = service.call_async(request)
        assert self.client.wait_for(future.done, timeout=timeout), f"{service.srv_name} did not answer"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, self.GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = self.ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request).success


def counts(*lists) -> tuple[int, ...]:
    return tuple(len(values) for values in lists)


def test_lifecycle_transitions_start_and_stop_the_camera_and_keep_the_model(tmp_path):
    from lifecycle_msgs.msg import Transition
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, Segmentation, SegmentationArray

    source = tmp_path / "frames"
    source.mkdir()
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cv2.imwrite(str(source / "frame.png"), frame)
    params = {"model": str(write_disk_model(tmp_path / "model")), "backend": "onnx", "camera": "emulator",
              "frame_rate": 10.0, "emulator.source": str(source), "lifecycle": True}
    log = tmp_path / "node.log"
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    proc = start_process(cmd, ros_env(DOMAIN), log)
    client = RosClient(DOMAIN, "lifecycle_manager")
    try:
        qos = QoSProfile(depth=10)
        frames = client.collect(Image, "image_raw", qos)
        segs = client.collect(SegmentationArray, "segmentations", qos)
        prompts = client.node.create_publisher(RoiPromptArray, "prompts", qos)
        array = RoiPromptArray(prompts=[RoiPrompt(id=5)])
        array.prompts[0].roi.x_offset, array.prompts[0].roi.y_offset = 200, 150
        array.prompts[0].roi.width, array.prompts[0].roi.height = 160, 120
        client.node.create_timer(0.2, lambda: prompts.publish(array))
        lifecycle = Lifecycle(client, NODE)

        def quiet(seconds: float) -> bool:
            """Nothing published for ``seconds`` (after what was in flight has landed)."""
            time.sleep(0.5)
            with client.lock:
                before = counts(frames, segs)
            time.sleep(seconds)
            with client.lock:
                return counts(frames, segs) == before

        def masks() -> int:
            return sum(1 for m in segs for s in m.segmentations if s.status == Segmentation.OK)

        def flowing() -> bool:
            """Frames and masks keep coming (a few more of each)."""
            with client.lock:
                before = len(frames), masks()
            return client.wait_for(lambda: len(frames) > before[0] + 3 and masks() > before[1] + 3, 60, proc)

        assert lifecycle.state() == "unconfigured"
        assert quiet(1.5) and not frames and not segs
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "inactive"
        assert quiet(1.5) and not frames and not segs, "configured (model loaded) but nothing streams yet"
        assert client.node.count_subscribers("prompts") == 0

        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == "active"
        assert flowing(), log.read_text()
        assert client.wait_for(lambda: client.node.count_subscribers("prompts") == 1, 30, proc)

        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == "inactive"
        assert quiet(2.0), "deactivated: the camera and the publishing stop"
        assert client.wait_for(lambda: client.node.count_subscribers("prompts") == 0, 30, proc)

        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)  # the same model, the camera again
        assert flowing(), log.read_text()
        assert log.read_text().count("configured:") == 1

        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == "unconfigured"
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)  # frees and loads again
        assert log.read_text().count("configured:") == 2
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert flowing(), log.read_text()

        assert lifecycle.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert lifecycle.state() == "finalized"
        assert quiet(1.5)
        assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)  # finalized stays finalized
    finally:
        client.close()
        code = stop_process(proc)
    text = log.read_text()
    assert code == 0 and "Traceback" not in text and "Exception in thread" not in text, text


def test_a_failed_configure_leaves_the_node_unconfigured_and_says_why(tmp_path):
    from lifecycle_msgs.msg import Transition

    params = {"model": str(tmp_path / "no_model_here"), "backend": "onnx", "lifecycle": True}
    log = tmp_path / "node.log"
    proc = start_process(node_command("picosam3_ros.nodes.sensor_node", params), ros_env(DOMAIN + 1), log)
    client = RosClient(DOMAIN + 1, "lifecycle_manager")
    try:
        lifecycle = Lifecycle(client, NODE)
        assert lifecycle.state() == "unconfigured"
        assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured" and proc.poll() is None
        assert "configure failed" in log.read_text() and "no_model_here" in log.read_text()
        # A managed node offers the services (the plain one does not: the next test).
        assert f"{NODE}/change_state" in dict(client.node.get_service_names_and_types())
    finally:
        client.close()
        code = stop_process(proc)
    assert code == 0 and "Traceback" not in log.read_text()


def test_the_plain_node_offers_no_lifecycle_services(tmp_path):
    params = {"model": str(write_disk_model(tmp_path / "model")), "backend": "onnx"}
    log = tmp_path / "node.log"
    proc = start_process(node_command("picosam3_ros.nodes.sensor_node", params), ros_env(DOMAIN), log)
    client = RosClient(DOMAIN, "service_lister")
    try:
        def services() -> dict:
            return dict(client.node.get_service_names_and_types())

        assert client.wait_for(lambda: f"{NODE}/set_parameters" in services(), 60, proc), log.read_text()
        time.sleep(1.0)  # the node's services are announced together; give the rest a moment
        assert f"{NODE}/change_state" not in services() and f"{NODE}/get_state" not in services()
        assert "ready:" in log.read_text()
    finally:
        client.close()
        code = stop_process(proc)
    assert code == 0
