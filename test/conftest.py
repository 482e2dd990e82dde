"""Shared pytest fixtures for the whole suite (keep this file small).

ROS isolation, for every test that starts ROS 2 (in-process or in subprocesses):

* This file sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` for the test session, so no
  test ever talks to other machines (``ROS_LOCALHOST_ONLY`` is ignored by Kilted).
* ``ros_env(domain_id)`` returns an environment dict for ``subprocess`` with that
  ``ROS_DOMAIN_ID``, localhost discovery, unbuffered Python output and ROS logs under the
  test's tmp dir. Each area owns a range of domain ids so that tests running at the same
  time never see each other's traffic: issue 2 (workspace, msgs, DDS) uses 10-19; ask the
  lead for yours. For in-process nodes use ``rclpy.init(domain_id=...)`` or
  ``rclpy.Context`` with ``InitOptions(domain_id)``.
* Two runs of the suite on one machine (two clones) still share a domain id, so put a
  per-test nonce in what you publish (e.g. ``header.frame_id``) and ignore everything else.

    def test_talk(ros_env):
        env = ros_env(12)
        subprocess.run([sys.executable, "test/my_peer.py"], env=env, timeout=60, check=True)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from picosam3_ros.nodes.fastdds_profile import with_large_images_profile

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)

REPO_ROOT = Path(__file__).resolve().parent.parent

# 640x480 rgb8 frames (0.9 MB) do not fit Fast DDS's default 512 KiB shared-memory segment
# and are mostly lost best-effort (README "Large images over DDS"). Every test process and
# the nodes it starts (they inherit os.environ) use the shipped profile, by the same rule as
# the launch file and the demo; a test that checks the default transport sets its own environment.
os.environ.update(with_large_images_profile(dict(os.environ)))


@pytest.fixture
def ros_env(tmp_path: Path) -> Callable[[int], dict[str, str]]:
    """Return a factory: domain id -> environment for a ROS 2 subprocess."""

    def make(domain_id: int) -> dict[str, str]:
        if not 0 <= domain_id <= 101:
            raise ValueError(f"ROS_DOMAIN_ID must be 0..101 on Linux, got {domain_id}")
        env = dict(os.environ)
        env.update(
            ROS_DOMAIN_ID=str(domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_LOG_DIR=str(tmp_path / "ros_log"),
            PYTHONUNBUFFERED="1",
        )
        env.pop("ROS_LOCALHOST_ONLY", None)
        return env

    return make
