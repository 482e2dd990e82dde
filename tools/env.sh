# Source me (bash): puts the project's venv and the workspace overlay into this shell.
#
#   source tools/env.sh            # from the repository root, after tools/bootstrap.sh
#
# Two modes, the same ones tools/bootstrap.sh builds with:
#   - no ROS sourced (ROS_DISTRO unset): ROS 2 comes from the PyPI wheels in .venv;
#     build-time tools find them with AMENT_PREFIX_PATH=$VIRTUAL_ENV (PICOSAM3_BUILD_ENV=1).
#   - a ROS 2 install already sourced (ROS_DISTRO set, e.g. /opt/ros/jazzy/setup.bash):
#     .venv is made with --system-site-packages and only adds the pip-only dependencies.
# Safe under `set -u` (ROS setup scripts read unset variables) and idempotent.
# Defines `colcon` as a function that runs colcon with the venv's Python, so ament_python
# entry points get the venv interpreter in both modes.

_picosam3_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case $- in *u*) _picosam3_nounset=1; set +u ;; *) _picosam3_nounset=0 ;; esac

if [ ! -f "$_picosam3_root/.venv/bin/activate" ]; then
  echo "tools/env.sh: no .venv yet; run tools/bootstrap.sh (or make bootstrap) first" >&2
else
  # shellcheck disable=SC1091
  source "$_picosam3_root/.venv/bin/activate"
  if [ -z "${ROS_DISTRO:-}" ] && [ "${PICOSAM3_BUILD_ENV:-0}" = 1 ]; then
    # The wheels' CMake/ament resources live under the venv prefix.
    case ":${AMENT_PREFIX_PATH:-}:" in
      *":$VIRTUAL_ENV:"*) ;;
      *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
    esac
  fi
  # Not while building: colcon must not see this workspace's own install as an underlay.
  if [ -f "$_picosam3_root/install/setup.bash" ] && [ "${PICOSAM3_BUILD_ENV:-0}" != 1 ]; then
    # shellcheck disable=SC1091
    source "$_picosam3_root/install/setup.bash"
  fi
  colcon() { python -c 'import sys; sys.argv[0] = "colcon"; from colcon_core.command import main; sys.exit(main())' "$@"; }
fi

[ "$_picosam3_nounset" = 1 ] && set -u
unset _picosam3_root _picosam3_nounset
