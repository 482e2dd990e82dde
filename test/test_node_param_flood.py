"""A flood of set_parameters calls on the real node (issue 21, item 10): every change takes
effect, and the log says so in batches (at most one line per 2 s, with the latest values),
where 1,000 changes in 8 s wrote 1,007 lines. The latency figures are
bench/bench_param_flood.py's.
"""

from __future__ import annotations

import time

from node_helpers import REPO, RosClient, node_command, ros_env, running, write_red_model

DOMAIN = 22
CHANGES = 400
WAIT_S = 60.0


def parameter(name: str, value):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue

    if isinstance(value, float):
        kind = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        kind = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    return Parameter(name=name, value=kind)


def latest_in_log(lines: list[str], value: str) -> bool:
    """The last line naming the parameter of ``value`` ("name=v") says that value.

    rclpy applies the parameters of one set_parameters request one by one, so a batch line
    can fall between two of them: the final values may be split over the last two lines.
    """
    name = value.split("=")[0] + "="
    naming = [line for line in lines if name in line]
    return bool(naming) and value in naming[-1]


def test_parameter_changes_are_applied_and_logged_in_batches(tmp_path):
    from rcl_interfaces.srv import GetParameters, SetParameters

    model = write_red_model(tmp_path / "model")
    params = {"model": str(model), "camera": "none", "backend": "onnx", "threads": 1}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    log_path = tmp_path / "node.log"
    with running(cmd, ros_env(DOMAIN), log_path) as proc:
        client = RosClient(DOMAIN, "param_flood_client")
        try:
            setter = client.node.create_client(SetParameters, "/picosam3_sensor/set_parameters")
            assert setter.wait_for_service(timeout_sec=WAIT_S)
            started = time.monotonic()
            for i in range(CHANGES):
                request = SetParameters.Request(parameters=[
                    parameter("threshold", 0.5 + (i % 40) / 100.0), parameter("max_prompts", 1 + i % 16)])
                future = setter.call_async(request)
                assert client.wait_for(future.done, WAIT_S, proc)
                assert all(r.successful for r in future.result().results)
            elapsed = time.monotonic() - started
            # The last values are in force, and the last batch reaches the log within a period.
            getter = client.node.create_client(GetParameters, "/picosam3_sensor/get_parameters")
            assert getter.wait_for_service(timeout_sec=WAIT_S)
            future = getter.call_async(GetParameters.Request(names=["threshold", "max_prompts"]))
            assert client.wait_for(future.done, WAIT_S, proc)
            threshold, max_prompts = future.result().values
            last = CHANGES - 1
            assert abs(threshold.double_value - (0.5 + (last % 40) / 100.0)) < 1e-9
            assert max_prompts.integer_value == 1 + last % 16
            final = (f"threshold={0.5 + (last % 40) / 100.0}", f"max_prompts={1 + last % 16}")

            def logged_last() -> bool:
                lines = [line for line in log_path.read_text().splitlines() if "parameters changed" in line]
                return all(latest_in_log(lines, value) for value in final)

            deadline = time.monotonic() + WAIT_S
            while not logged_last() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            client.close()
    lines = [line for line in log_path.read_text().splitlines() if "parameters changed" in line]
    assert all(latest_in_log(lines, value) for value in final), lines[-3:]
    assert len(lines) <= elapsed / 2.0 + 3, f"{len(lines)} lines for {CHANGES} changes in {elapsed:.1f} s"
    assert any(f"({2 * n} changes since the last line" in line for line in lines for n in range(2, CHANGES))
