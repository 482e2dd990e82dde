"""Write or check requirements/constraints.txt, the exact pins of the project's venv.

    python tools/constraints.py freeze   # pin everything installed in this venv
    python tools/constraints.py check    # list installed packages that have no pin
    /usr/bin/python3 tools/constraints.py system OUT [--only-system]
        # for a robot's venv (--system-site-packages): pin what the system Python already
        # has at the system's version, plus our pins for everything else (unless --only-system)

Run with the venv's Python (``make constraints`` does). The ROS wheels also
install egg-info metadata for their inner packages (``rclpy``, ``std_msgs``);
those are not on any index, so only real wheel installs (dist-info) are pinned.
Local version labels are dropped (``torch==2.13.0+cpu`` -> ``torch==2.13.0``),
so the pin matches the CPU wheel on this machine's find-links.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parent.parent / "requirements" / "constraints.txt"
UNPINNED = {"pip"}  # the venv's own installer; pinning it only slows the bootstrap

HEADER = """\
# Exact pins for every package in .venv (generated: `make constraints`, i.e.
# `python tools/constraints.py freeze`, from a venv that passed `make test`).
# The bootstrap installs all requirements/*.txt with `-c` this file; a package
# that is not listed here installs unpinned (the bootstrap warns): re-freeze.
# requirements/venv-<name>.txt files get their own venvs and ignore this file.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(include_egg_info: bool = False) -> dict[str, str]:
    """Map canonical name -> version for installed packages (by default wheel installs only)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        path = getattr(dist, "_path", None)
        if not include_egg_info and path is not None and str(path).endswith(".egg-info"):
            continue
        name = dist.metadata["Name"]
        if not name or not dist.version or canonical(name) in UNPINNED:
            continue
        found[canonical(name)] = dist.version.split("+", 1)[0]
    return found


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    if CONSTRAINTS.exists():
        for line in CONSTRAINTS.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[canonical(name)] = version.strip()
    return pins


def freeze() -> int:
    pins = installed()
    body = "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))
    CONSTRAINTS.write_text(HEADER + body)
    print(f"wrote {len(pins)} pins to {CONSTRAINTS}")
    return 0


def check() -> int:
    pins = pinned()
    loose = sorted(name for name in installed() if name not in pins)
    if loose:
        print("warning: installed without a pin in requirements/constraints.txt "
              f"(run `make constraints`): {', '.join(loose)}", file=sys.stderr)
    return 0


def system(out: Path, only_system: bool) -> int:
    have = installed(include_egg_info=True)  # apt installs Python packages as egg-info
    pins = {} if only_system else {name: v for name, v in pinned().items() if name not in have}
    pins.update(have)
    out.write_text("".join(f"{name}=={pins[name]}\n" for name in sorted(pins)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["freeze", "check", "system"])
    parser.add_argument("out", nargs="?", type=Path, help="output file (system)")
    parser.add_argument("--only-system", action="store_true")
    args = parser.parse_intermixed_args()
    if args.action == "system":
        if args.out is None:
            parser.error("system needs an output file")
        return system(args.out, args.only_system)
    return freeze() if args.action == "freeze" else check()


if __name__ == "__main__":
    sys.exit(main())
