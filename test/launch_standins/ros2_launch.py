"""What ``ros2 launch PACKAGE FILE [name:=value ...]`` does, with the stand-ins (tests only).

    python test/launch_standins/ros2_launch.py picosam3_ros sensor.launch.py namespace:=robot1

Finds FILE in the package's share directory, loads it, runs its description with the launch
arguments; Ctrl-C (SIGINT) or SIGTERM shuts the launched processes down.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import LaunchService  # noqa: E402


def main(argv: list[str]) -> int:
    from ament_index_python.packages import get_package_share_directory

    package, file_name, *arguments = argv
    share = Path(get_package_share_directory(package))
    found = sorted(share.rglob(file_name))
    if not found:
        print(f"file '{file_name}' was not found in the share directory of package '{package}'",
              file=sys.stderr)
        return 1
    spec = importlib.util.spec_from_file_location("launch_file", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = LaunchService(argv=arguments)
    service.include_launch_description(module.generate_launch_description())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _: service.shutdown(f"signal {signal.Signals(number).name}"))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
