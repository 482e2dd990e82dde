"""Where the Fast DDS large-images profile lives, and the environment that applies it.

Fast DDS's default shared-memory segment (512 KiB) is smaller than a 640x480 rgb8
Image; config/fastdds_large_images.xml raises it (README "Large images over DDS").
ROS-free: processes started by our tools and launch files get the profile through
FASTDDS_DEFAULT_PROFILES_FILE, unless the user already configured Fast DDS.
"""

from __future__ import annotations

from pathlib import Path

PROFILE_NAME = "fastdds_large_images.xml"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
# Any of these set means the user already chose a Fast DDS profile or transports: leave it alone.
USER_FASTDDS_SETTINGS = (PROFILE_VARIABLE, "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
# `fastdds_profile:=none` (ros2 launch rejects an empty `fastdds_profile:=''`) and friends: no profile.
DISABLED_VALUES = ("", "none", "false", "off")


def large_images_profile() -> Path | None:
    """The profile file: the installed package share (ament index), else the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory("picosam3_ros")) / "config" / PROFILE_NAME)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME)
    return next((path for path in candidates if path.is_file()), None)


def with_large_images_profile(env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` that loads the profile, unless ``env`` already configures Fast DDS."""
    env = dict(env)
    profile = large_images_profile()
    if profile is not None and not any(env.get(name) for name in USER_FASTDDS_SETTINGS):
        env[PROFILE_VARIABLE] = str(profile)
    return env
