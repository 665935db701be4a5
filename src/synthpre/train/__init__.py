"""Stage 4: THE training engine, shared by synthetic pre-training and fine-tuning.

``TrainConfig`` imports without torch; the engine and checkpoint helpers load on first use, so that
``synthpre --help`` and the torch-free commands start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthpre.train.config import TrainConfig

_LAZY = {
    "train": "engine",
    "TrainResult": "engine",
    "SelectionRule": "checkpoints",
    "load_model_weights": "checkpoints",
    "newest_valid_checkpoint": "checkpoints",
}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'synthpre.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"synthpre.train.{_LAZY[name]}"), name)
