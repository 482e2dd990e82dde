"""Workarounds for third-party packages, in one place.

Why: model-compression-toolkit 2.6.1 imports ``edgemdt_cl.pytorch`` (Sony's custom
layers, for object-detection NMS) while loading its PyTorch reader, and that
package refuses to import unless ``torchvision`` is installed (it checks the
version, then its NMS module does ``import torchvision`` only to register
``torch.ops.torchvision``). PicoSAM3 uses none
of those layers, and there is no CPU-only torchvision wheel for torch 2.13 on this
machine (any other spec pulls GBs of CUDA wheels). So for the first MCT import we
drop torchvision from edgemdt_cl's requirement list and import ``edgemdt_cl.pytorch``
with an empty stand-in under ``sys.modules["torchvision"]``, removed again right
after, so that MCT and other packages (transformers) still see torchvision as absent. The
NMS layers would fail at call time (``torch.ops.torchvision``); we never call them.
Where torchvision is installed this is a no-op.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from types import ModuleType


def import_mct() -> ModuleType:
    """Import and return ``model_compression_toolkit``, with the torchvision workaround."""
    if importlib.util.find_spec("model_compression_toolkit") is None:
        raise ModuleNotFoundError(
            "model-compression-toolkit is not installed: pip install -r requirements/train.txt"
        )
    if "model_compression_toolkit" in sys.modules:
        return sys.modules["model_compression_toolkit"]
    if importlib.util.find_spec("torchvision") is not None or importlib.util.find_spec("edgemdt_cl") is None:
        import model_compression_toolkit

        return model_compression_toolkit
    import edgemdt_cl

    torch_requirements = edgemdt_cl.required_libraries.get("torch")
    if torch_requirements is not None:
        torch_requirements[:] = [r for r in torch_requirements if not r.startswith("torchvision")]
    sys.modules["torchvision"] = ModuleType("torchvision")
    try:
        import edgemdt_cl.pytorch  # noqa: F401  (the only importer of torchvision)
    finally:
        sys.modules.pop("torchvision", None)
    import model_compression_toolkit

    return model_compression_toolkit


@contextlib.contextmanager
def torchscript_onnx_export():
    """Make ``torch.onnx.export`` use the TorchScript exporter inside this block.

    Why: MCT 2.6.1's ONNX exporter calls ``torch.onnx.export`` without ``dynamo=``;
    since torch 2.9 that defaults to the dynamo exporter, which cannot trace MCT's
    quantization wrappers (and drops ``dynamic_axes``). Forcing ``dynamo=False``
    restores the exporter MCT was written for.
    """
    import torch.onnx

    original = torch.onnx.export

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original
