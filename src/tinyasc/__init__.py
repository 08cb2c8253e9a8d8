"""tinyasc: low-complexity acoustic scene classification (DCASE 2021 Task 1A and beyond).

The public API a script uses::

    import tinyasc
    tinyasc.list_models()                       # registered architectures
    model = tinyasc.create_model("dcase2021_baseline", n_classes=10)
    run = tinyasc.RunDir("runs/baseline")       # a trained run directory
    lm = tinyasc.load_model("runs/baseline")    # its shipped model (or a model file, or an .onnx export)

The names load on first use, so ``import tinyasc`` (and the command line's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it; loaded on first access (PEP 562) because they import torch
_API = {
    "create_model": "tinyasc.models",
    "list_models": "tinyasc.models",
    "get_model_info": "tinyasc.models",
    "load_model": "tinyasc.evaluate.predict",
    "LoadedModel": "tinyasc.artifact",
    "RunDir": "tinyasc.rundir",
    "Config": "tinyasc.config",
    "load_config": "tinyasc.config",
    "fit": "tinyasc.train.run",
    "evaluate_run": "tinyasc.evaluate.run",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'tinyasc' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
