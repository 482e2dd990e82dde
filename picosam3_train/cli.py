"""``picosam3_train <subcommand> [args]``: one entry point for the whole pipeline.

Each subcommand is ``picosam3_train.<module>:main(argv)``, imported lazily so that
``train`` works without the export tool chain and a missing piece says so.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "train": ("picosam3_train.train", "train a student (or the CNN teacher) from a YAML config"),
    "cache-teacher": ("picosam3_train.teachers.cache", "precompute a teacher's soft masks into a cache"),
    "evaluate": ("picosam3_train.evaluate", "crop-space and full-resolution mIoU reports with baselines"),
    "export": ("picosam3_train.export", "export a checkpoint to fp32 ONNX"),
    "quantize": ("picosam3_train.quantize", "MCT INT8 PTQ, QDQ ONNX and imxconv-pt packerOut.zip"),
    "package": ("picosam3_train.package_model", "build picosam3_ros/models/ from a checkpoint"),
    "import-onnx": ("picosam3_train.import_onnx", "a checkpoint from a shipped fp32 ONNX (to fine-tune)"),
    "model": ("picosam3_train.model", "print a model's parameters and MACs at 96x96"),
}


def _usage() -> str:
    lines = ["usage: picosam3_train <subcommand> [args]", "", "subcommands:"]
    lines += [f"  {name:<14} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"picosam3_train: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"picosam3_train {name}: cannot import {module_name} ({exc}); "
              f"is that part of the pipeline installed?", file=sys.stderr)
        return 2
    if not hasattr(module, "main"):
        print(f"picosam3_train {name}: {module_name} has no main(argv)", file=sys.stderr)
        return 2
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
