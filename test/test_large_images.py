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
from xml.etree import ElementTree

from node_helpers import LARGE_IMAGES_PROFILE, REPO, large_images_env, ros_env, running

from picosam3_ros.nodes.fastdds_profile import with_large_images_profile

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


def test_profile_gives_the_default_participant_a_shm_segment_for_whole_frames():
    ns = {"dds": "http://www.eprosima.com"}
    root = ElementTree.parse(LARGE_IMAGES_PROFILE).getroot()
    descriptors = root.iterfind(".//dds:transport_descriptor", ns)
    shm = [d for d in descriptors if d.findtext("dds:type", "", ns) == "SHM"]
    assert len(shm) == 1
    frame_bytes = 640 * 480 * 3
    assert int(shm[0].findtext("dds:segment_size", "0", ns)) >= 4 * frame_bytes  # room for several frames
    participant = root.find(".//dds:participant[@is_default_profile='true']", ns)
    used = [t.text for t in participant.iterfind(".//dds:userTransports/dds:transport_id", ns)]
    assert shm[0].findtext("dds:transport_id", "", ns) in used


def test_a_users_own_fastdds_settings_are_left_alone():
    assert with_large_images_profile({})["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LARGE_IMAGES_PROFILE)
    mine = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}
    assert with_large_images_profile(mine) == mine
    transports = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    assert with_large_images_profile(transports) == transports


def test_640x480_rgb8_frames_arrive_between_processes_with_the_profile(tmp_path):
    result = exchange(tmp_path, ros_env(DOMAIN, large_images_env()))
    assert result["corrupt"] == 0, result
    assert result["received"] >= 0.8 * FRAMES, f"only {result['received']}/{FRAMES} frames arrived: {result}"
