"""Two separate processes exchange RoiPromptArray and SegmentationArray over real DDS.

Localhost discovery and this test's own ROS_DOMAIN_IDs (10 and 11, from issue 2's
range 10-19); a third process on another domain must see nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

PEER = str(Path(__file__).resolve().parent / "dds_peer.py")
DOMAIN = 10
OTHER_DOMAIN = 11


def start(role: str, nonce: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, PEER, role, nonce, *extra],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def received(stdout: str) -> dict[str, dict]:
    messages = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {m["type"]: m for m in messages}


def test_publisher_and_subscriber_processes_exchange_both_arrays(ros_env):
    nonce = uuid.uuid4().hex  # ignore any other run that shares the domain
    publisher = start("pub", nonce, ros_env(DOMAIN))
    subscriber = start("sub", nonce, ros_env(DOMAIN), "--timeout", "60")
    try:
        sub_rc, sub_out, sub_err = finish(subscriber, timeout=90)
        # Only now is the publisher known to be publishing: listen on another domain meanwhile.
        outsider = start("sub", nonce, ros_env(OTHER_DOMAIN), "--timeout", "4")
        out_rc, out_out, out_err = finish(outsider, timeout=60)
        publisher_alive = publisher.poll() is None
    finally:
        publisher.terminate()  # rclpy's SIGTERM handler: a clean shutdown, exit 0
        pub_rc, _, pub_err = finish(publisher, timeout=30)

    assert sub_rc == 0, f"subscriber got {list(received(sub_out))} (rc {sub_rc})\n{sub_err}\npub:\n{pub_err}"
    assert publisher_alive and pub_rc == 0, f"publisher died or exited badly (rc {pub_rc}):\n{pub_err}"

    messages = received(sub_out)
    assert messages["RoiPromptArray"] == {
        "type": "RoiPromptArray",
        "stamp": 42,
        "prompts": [[3, True, [100, 50, 64, 32]], [9, True, [0, 0, 4056, 3040]]],
    }
    ok, stale = messages["SegmentationArray"]["segmentations"]
    assert messages["SegmentationArray"]["stamp"] == 43
    assert ok == {
        "prompt_id": 3, "crop": [90, 32, 84, 84], "mask": [2, 3, "mono8", [0, 255, 0, 255, 255, 255]],
        "score": 0.75, "status": 0, "backend": "onnx", "latency_ms": 11.5,
    }
    assert (stale["prompt_id"], stale["status"], stale["backend"]) == (9, 2, "imx500")
    assert stale["mask"] == [0, 0, "", []]

    # Domain isolation: the same topics on another domain id stay silent.
    assert out_rc == 2 and received(out_out) == {}, f"domain {OTHER_DOMAIN} saw traffic:\n{out_out}{out_err}"
