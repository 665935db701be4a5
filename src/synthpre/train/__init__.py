"""Stage 4: THE training engine, shared by synthetic pre-training and fine-tuning.

``TrainConfig`` imports without torch; the engine, checkpoint and selection helpers load on first use,
so that ``synthpre --help`` and the torch-free commands start fast (``selection`` needs no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from synthpre.train.config import TrainConfig

_LAZY = {
    "train": "engine",
    "TrainResult": "engine",
    "SelectionRule": "selection",
    "finetune_selection": "selection",
    "best_of": "selection",
    "load_model_weights": "checkpoints",
    "newest_valid_checkpoint": "checkpoints",
}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'synthpre.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"synthpre.train.{_LAZY[name]}"), name)
