"""Where a run reports: ``metrics.jsonl``, TensorBoard events under ``tb/`` (and wandb or mlflow:
``trackers.py``), and a progress bar.

Every row of ``metrics.jsonl`` has ``step`` and ``split`` ("train" or "val").  On resume from step
``N`` the rows of later steps (written by the killed run) are dropped, so the file reads as one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a run killed mid-write
            continue
    return rows


class MetricsLog:
    """Appends metrics rows and passes them to the trackers (main process only; a no-op elsewhere)."""

    def __init__(
        self, run_dir: Path, start_step: int, enabled: bool, log_with: str = "tensorboard",
        config: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        from synthpre.train.trackers import open_trackers

        self.enabled = enabled
        self.bar: tqdm | None = None
        if not enabled:
            return
        path = run_dir / METRICS_FILE
        kept = [row for row in read_metrics(run_dir) if row["step"] <= start_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self.file = open(path, "a")  # noqa: SIM115 - open for the whole run
        self.trackers = open_trackers(run_dir, start_step, log_with, config or {})

    def progress_bar(self, config, start_step: int) -> tqdm:
        self.bar = tqdm(
            total=config.max_steps,
            initial=start_step,
            disable=not (self.enabled and config.progress),
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        return self.bar

    def _write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self.file.flush()
        scalars = {f"{split}/{name}": value for name, value in values.items()}
        for tracker in self.trackers:
            tracker.log(scalars, step=step)

    def train(self, step: int, values: dict[str, float]) -> None:
        self._write(step, "train", values)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{values['loss']:.4f}",
                acc=f"{values['token_accuracy']:.3f}",
                tok_s=f"{values['tokens_per_s']:.0f}",
            )

    def validation(self, step: int, values: dict[str, float]) -> None:
        self._write(step, "val", values)
        if self.bar is not None and "val_token_accuracy" in values:
            loss, accuracy = values["val_loss"], values["val_token_accuracy"]
            self.bar.write(f"step {step}: val_loss {loss:.4f} val_token_accuracy {accuracy:.4f}")

    def close(self) -> None:
        """End the log (once: the engine also closes it when a run fails)."""
        if self.enabled:
            self.enabled = False
            self.file.close()
            for tracker in self.trackers:
                tracker.finish()
