"""``synthpre downstream check``: what a researcher looks at before spending GPU hours on a task's data.

The layout found in ``--data``, examples per split, one formatted example, input and target lengths
in tokens of the tokenizer fine-tuning would choose, and how many examples the task's max lengths
truncate.  It reads the data with the same code as ``synthpre finetune`` and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthpre.data.stream import collated_lengths
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.finetune import choose_tokenizer, read_split, with_data_format
from synthpre.downstream.readers import SPLITS, TextExample
from synthpre.downstream.registry import get_downstream_task

PERCENTILES = (50, 90, 99, 100)


@dataclass(frozen=True)
class Lengths:
    """Token lengths of one side of a split (EOS not counted) and how many the max length cuts."""

    percentiles: dict[int, int]
    max_len: int  # with EOS, as the engine collates
    truncated: int

    @classmethod
    def of(cls, lengths: np.ndarray, max_len: int) -> Lengths:
        kept = collated_lengths(lengths, max_len)  # truncated to max_len - 1, then EOS
        return cls(
            {p: int(np.percentile(lengths, p)) for p in PERCENTILES}, max_len, int((kept < lengths + 1).sum())
        )


@dataclass(frozen=True)
class SplitCheck:
    split: str
    examples: int
    inputs: Lengths
    targets: Lengths


@dataclass(frozen=True)
class DataCheck:
    task: str
    data: str | None
    layout: str | None  # None for the offline tasks
    layout_files: str | None
    tokenizer: str
    example: TextExample
    splits: list[SplitCheck]


def tokenizer_name(config: FinetuneConfig) -> str:
    if config.tokenizer == "chars":
        return "characters of the training split (--tokenizer chars)"
    if config.tokenizer or config.init_from:
        return f"the tokenizer of {config.tokenizer or config.init_from}"
    if get_downstream_task(config.task).chars_by_default:
        return "characters of the training split (the offline seq2seq tasks' default)"
    return "SentencePiece trained on the training split (what `synthpre finetune` would train)"


def check_data(config: FinetuneConfig) -> DataCheck:
    """Read every split of the task as fine-tuning would, and measure it."""
    config = with_data_format(config.resolved())
    task = get_downstream_task(config.task)
    examples = {split: read_split(task, config, split) for split in SPLITS}
    tokenizer = choose_tokenizer(config, examples["train"])
    checks = []
    for split, split_examples in examples.items():
        inputs = np.array([len(ids) for ids in tokenizer.encode_many([e.input for e in split_examples])])
        targets = np.array([len(ids) for ids in tokenizer.encode_many([e.target for e in split_examples])])
        checks.append(
            SplitCheck(split, len(split_examples), Lengths.of(inputs, config.max_input_len),
                       Lengths.of(targets, config.max_target_len))
        )  # fmt: skip
    layout = task.layout(config.data, config.data_format)
    return DataCheck(
        task.name, config.data, config.data_format, layout.files if layout else None,
        tokenizer_name(config), examples["train"][0], checks,
    )  # fmt: skip


def shorten(text: str, chars: int = 300) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= chars else text[:chars] + f"... ({len(text):,} characters)"


def format_check(check: DataCheck) -> str:
    """The check as the text ``synthpre downstream check`` prints."""
    where = f"{check.layout} layout ({check.layout_files}) in {check.data}" if check.layout else "built in"
    lines = [
        f"task {check.task}: {where}",
        f"tokens: {check.tokenizer}",
        f"example ({check.example.id}):",
        f"  input:  {shorten(check.example.input)}",
        f"  target: {shorten(check.example.target)}",
        "",
        f"{'split':<11}{'examples':>10}  {'side':<7}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>8}  truncated",
    ]
    for s in check.splits:
        for side, lengths in (("input", s.inputs), ("target", s.targets)):
            p = lengths.percentiles
            share = 100 * lengths.truncated / max(s.examples, 1)
            cut = f"{lengths.truncated:,} ({share:.1f}%) > {lengths.max_len}"
            head = f"{s.split:<11}{s.examples:>10,}" if side == "input" else " " * 21
            lines.append(f"{head}  {side:<7}{p[50]:>7,}{p[90]:>7,}{p[99]:>7,}{p[100]:>8,}  {cut}")
    lines.append("lengths in tokens without EOS; truncated: longer than the max length with EOS "
                 "(--max-input-len / --max-target-len)")  # fmt: skip
    return "\n".join(lines)
