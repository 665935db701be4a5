"""Stage 4: THE training engine, shared by synthetic pre-training and fine-tuning."""

from synthpre.train.checkpoints import SelectionRule, load_model_weights, newest_valid_checkpoint
from synthpre.train.engine import TrainConfig, TrainResult, train

__all__ = [
    "SelectionRule",
    "TrainConfig",
    "TrainResult",
    "load_model_weights",
    "newest_valid_checkpoint",
    "train",
]
