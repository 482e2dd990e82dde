"""Teachers for distillation and the cache of their soft masks.

``build_teacher(kind, path)`` picks one by name:

* ``sam``, ``sam2``, ``sam3``: transformers models from a local folder (SamModel,
  Sam2Model, Sam3TrackerModel); ``sam3-package``: Meta's ``sam3`` package and a
  local checkpoint file;
* ``onnx``: any ONNX model taking a crop (96x96 or its own size);
* ``checkpoint``: a picosam3_train checkpoint, e.g. the wider CNN teacher trained here.

``picosam3_train cache-teacher`` (``teachers.cache``) runs one over a dataset once.
"""

from __future__ import annotations

from pathlib import Path

from picosam3_train.teachers.base import Teacher, TeacherOutput

TEACHER_KINDS = ("sam", "sam2", "sam3", "sam3-package", "onnx", "checkpoint")


def build_teacher(
    kind: str,
    path: str | Path,
    device: str = "cpu",
    input_size: int | None = None,
    bpe_path: str | None = None,
) -> Teacher:
    """Build a teacher by kind from a local weights path (imports its backend lazily)."""
    if kind in ("sam", "sam2", "sam3"):
        from picosam3_train.teachers.sam import TransformersSamTeacher

        return TransformersSamTeacher(path, family=kind, device=device)
    if kind == "sam3-package":
        from picosam3_train.teachers.sam import Sam3PackageTeacher

        return Sam3PackageTeacher(path, bpe_path=bpe_path, device=device)
    if kind == "onnx":
        from picosam3_train.teachers.cnn import OnnxTeacher

        return OnnxTeacher(path, input_size=input_size)
    if kind == "checkpoint":
        from picosam3_train.teachers.cnn import CheckpointTeacher

        return CheckpointTeacher(path, input_size=input_size, device=device)
    raise ValueError(f"unknown teacher kind {kind!r}; choose from {TEACHER_KINDS}")


__all__ = ["TEACHER_KINDS", "Teacher", "TeacherOutput", "build_teacher"]
