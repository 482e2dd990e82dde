"""Stand-in for ``launch_ros.substitutions`` (tests only)."""

from __future__ import annotations

from launch import LaunchContext, Substitution, perform_substitutions


class FindPackageShare(Substitution):
    def __init__(self, package) -> None:
        self.package = package

    def perform(self, context: LaunchContext) -> str:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory(perform_substitutions(context, self.package))
