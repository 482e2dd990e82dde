"""Large best-effort images between two processes arrive with the shipped Fast DDS profile.

Fast DDS's default 512 KiB shared-memory segment is smaller than a 640x480 rgb8
Image (0.9 MB); without config/fastdds_large_images.xml most such frames are lost
between processes on one host (bench/bench_transport.py measures it). Here a
publisher process sends 30 frames at 10 Hz to a subscriber process, both with the
profile, and most must arrive intact: a delivery count with a generous bar, not a
timing assertion. ROS domain used here: 80.
"""

from __future__ import annotations

import json
import sys
import uuid

from node_helpers import LARGE_IMAGES_PROFILE, REPO, large_images_env, ros_env, running

DOMAIN = 80
FRAMES = 30
PEER = str(REPO / "test" / "large_image_peer.py")


def exchange(tmp_path, env: dict[str, str]) -> dict:
    nonce = uuid.uuid4().hex  # ignore any other run that shares the domain
    sub_log = tmp_path / "sub.log"
    with running([sys.executable, PEER, "sub", nonce], env, sub_log):
        pub_cmd = [sys.executable, PEER, "pub", nonce, "--frames", str(FRAMES), "--rate", "10"]
        with running(pub_cmd, env, tmp_path / "pub.log") as pub:
            rc = pub.wait(timeout=120)
        assert rc == 0, (tmp_path / "pub.log").read_text()
    lines = [line for line in sub_log.read_text().splitlines() if line.startswith("{")]
    assert lines, sub_log.read_text()
    return json.loads(lines[-1])


def test_profile_is_a_valid_fastdds_profile():
    env = large_images_env()
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LARGE_IMAGES_PROFILE)
    text = LARGE_IMAGES_PROFILE.read_text()
    assert "<segment_size>" in text and 'is_default_profile="true"' in text


def test_640x480_rgb8_frames_arrive_between_processes_with_the_profile(tmp_path):
    result = exchange(tmp_path, ros_env(DOMAIN, large_images_env()))
    assert result["corrupt"] == 0, result
    assert result["received"] >= 0.8 * FRAMES, f"only {result['received']}/{FRAMES} frames arrived: {result}"
