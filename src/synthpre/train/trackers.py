"""Experiment trackers, through accelerate's tracker classes: TensorBoard always (``RUN/tb/``), and
``log_with: wandb | mlflow`` (``--log-with``) beside it, for researchers who follow runs there.

TensorBoard is a dependency; wandb and mlflow are optional extras (``pip install 'synthpre[wandb]'``),
checked before anything is written.  Both work without a network: ``WANDB_MODE=offline`` keeps a wandb
run in ``RUN/wandb/`` (``wandb sync`` uploads it later); mlflow writes a file store in ``RUN/mlruns/``
unless ``MLFLOW_TRACKING_URI`` names a server.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from synthpre.errors import UserError

TRACKERS = ("tensorboard", "wandb", "mlflow")
PROJECT = "synthpre"  # the wandb project (WANDB_PROJECT) and mlflow experiment (MLFLOW_EXPERIMENT_NAME)


def check_tracker(log_with: str) -> None:
    """A ``UserError`` naming the extra to install when the tracker's package is missing."""
    if log_with != "tensorboard" and importlib.util.find_spec(log_with) is None:
        offline = "WANDB_MODE=offline" if log_with == "wandb" else "a file store in the run folder"
        raise UserError(
            f"log_with {log_with} (--log-with): the {log_with} package is not installed; "
            f"pip install 'synthpre[{log_with}]' (it works offline: {offline}), or use --log-with tensorboard"
        )


def open_trackers(run_dir: Path, start_step: int, log_with: str, config: dict[str, Any]) -> list:
    """Start the run's trackers (main process; ``check_tracker`` has passed); a resumed run's TensorBoard
    events after its checkpoint are purged, as metrics.jsonl's rows are."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    trackers = [TensorBoardTracker("tb", run_dir, purge_step=start_step + 1)]
    if log_with == "wandb":
        project = os.environ.get("WANDB_PROJECT", PROJECT)
        trackers.append(WandBTracker(project, name=run_dir.name, dir=str(run_dir)))
    elif log_with == "mlflow":
        if "MLFLOW_TRACKING_URI" not in os.environ:
            import mlflow

            mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        trackers.append(MLflowTracker(experiment_name=PROJECT, run_name=run_dir.name))
    for tracker in trackers:
        tracker.start()
    for tracker in trackers[1:]:  # TensorBoard's hparams would add a folder per start; config.json has them
        tracker.store_init_configuration(config)
    return trackers
