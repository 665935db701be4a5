"""The downstream-task registry: reader, input formatting, post-processing, metrics and App. D.3
hyper-parameters of each real task (seqio style: one object bundles everything a run needs).

Six tasks of App. D read the files a user downloaded (``--data DIR``); two tasks are built from data
every installation has (``pycode_summarize``, ``smiles_canonicalize``) and need no ``--data``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.downstream import metrics as m
from synthpre.downstream import offline, readers
from synthpre.downstream.readers import TextExample
from synthpre.errors import UserError, lookup
from synthpre.train.selection import BEST_VAL_METRIC, FIXED_STEP, MAX_VAL_TOKEN_ACCURACY, finetune_selection


@dataclass(frozen=True)
class FinetuneDefaults:
    """App. B / D.3 fine-tuning hyper-parameters of one task (constant learning rate, Adafactor)."""

    learning_rate: float
    max_input_len: int
    max_target_len: int
    batch_size: int
    max_steps: int
    eval_every: int
    max_decode_len: int
    selection: str = MAX_VAL_TOKEN_ACCURACY  # App. B's rule (``synthpre.train.selection``)
    selection_step: int | None = None  # FIXED_STEP


Scorer = Callable[[Sequence[str], m.References, Sequence[Sequence[str]] | None], dict[str, float]]


@dataclass(frozen=True)
class DownstreamTask:
    name: str
    description: str
    read: Callable[[Path | None, str], list[TextExample]]  # (data folder, split) -> examples
    score: Scorer  # (predictions, references, beam candidates) -> metrics in percent
    headline_metric: str  # the metric that BEST_VAL_METRIC selects on and reports first
    defaults: FinetuneDefaults
    needs_data: bool = True
    postprocess: Callable[[str], str] = str.strip  # decoded text -> prediction

    @property
    def selection(self) -> dict[str, Any]:
        """The engine settings of its App. B rule: ``selection``, ``selection_metric``, ``selection_step``."""
        d = self.defaults
        return finetune_selection(d.selection, self.headline_metric, d.selection_step)

    @property
    def selection_metric(self) -> str:
        """The metric its checkpoints, and the learning rate of a sweep, are chosen on (App. B)."""
        return self.selection["selection_metric"]

    def examples(self, data: Path | None, split: str) -> list[TextExample]:
        if split not in readers.SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(readers.SPLITS)}")
        return self.read(data, split)


def _files(task: str, names: dict[str, tuple[str, ...]], read: Callable[[Path, str], list[TextExample]]):
    """A ``read(data, split)`` that finds the split's file among ``names[split]`` in the data folder."""

    def read_split(data: Path | None, split: str) -> list[TextExample]:
        return read(readers.find_split_file(data, split, names[split], task), split)

    return read_split


def _read_code_translation(data: Path | None, split: str) -> list[TextExample]:
    stem = {"train": "train", "validation": "valid", "test": "test"}[split]
    java = readers.find_split_file(data, split, (f"{stem}.java-cs.txt.java",), "code_translation")
    cs = readers.find_split_file(data, split, (f"{stem}.java-cs.txt.cs",), "code_translation")
    return readers.read_line_aligned(java, cs, split)


def _with_names(
    split_names: dict[str, tuple[str, ...]], extensions: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    return {
        split: tuple(f"{n}.{e}" for n in names for e in extensions) for split, names in split_names.items()
    }


def _exact_and_f1(predictions, references, candidates=None) -> dict[str, float]:
    return {"em": m.exact_match(predictions, references), "f1": m.token_f1(predictions, references)}


def _squad(predictions, references, candidates=None) -> dict[str, float]:
    return m.squad_scores(predictions, references)


def _rouge(predictions, references, candidates=None) -> dict[str, float]:
    return m.rouge(predictions, references)


def _code(predictions, references, candidates=None) -> dict[str, float]:
    return {"em": m.exact_match(predictions, references), "bleu": m.bleu(predictions, references)}


def _smiles(predictions, references, candidates=None) -> dict[str, float]:
    return {
        "em": m.exact_match(predictions, references),
        **m.smiles_scores(predictions, references, candidates),
    }


def _summary(predictions, references, candidates=None) -> dict[str, float]:
    return {
        "rouge1": m.rouge(predictions, references)["rouge1"],
        "em": m.exact_match(predictions, references),
    }


_SKG_SPLITS = {"train": ("train",), "validation": ("dev", "validation", "valid"), "test": ("test",)}

DOWNSTREAM_TASKS: dict[str, DownstreamTask] = {
    task.name: task
    for task in (
        DownstreamTask(
            "cnndm_10k",
            "CNN/DailyMail summarization, first 10K training articles (CSV or JSONL)",
            _files(
                "cnndm_10k",
                _with_names(
                    {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)},
                    ("csv", "jsonl"),
                ),
                lambda path, split: readers.read_cnndm(
                    path, split, readers.CNNDM_TRAIN_SIZE if split == "train" else None
                ),
            ),
            _rouge,
            "rouge1",
            FinetuneDefaults(
                learning_rate=1e-3,
                max_input_len=512,
                max_target_len=256,
                batch_size=128,
                max_steps=100_000,
                eval_every=10_000,
                max_decode_len=148,
                selection=FIXED_STEP,
                selection_step=50_000,
            ),
        ),
        DownstreamTask(
            "mtop",
            "MTOP semantic parsing, UnifiedSKG seq2seq JSON",
            _files("mtop", _with_names(_SKG_SPLITS, ("json", "jsonl")), readers.read_unified_skg),
            _exact_and_f1,
            "em",
            FinetuneDefaults(
                learning_rate=1e-3,
                max_input_len=1024,
                max_target_len=128,
                batch_size=128,
                max_steps=100_000,
                eval_every=10_000,
                max_decode_len=128,
            ),
        ),
        DownstreamTask(
            "webqsp",
            "WebQSP semantic parsing, UnifiedSKG seq2seq JSON",
            _files("webqsp", _with_names(_SKG_SPLITS, ("json", "jsonl")), readers.read_unified_skg),
            _exact_and_f1,
            "em",
            FinetuneDefaults(
                learning_rate=1e-3,
                max_input_len=2048,
                max_target_len=256,
                batch_size=32,
                max_steps=50_000,
                eval_every=5_000,
                max_decode_len=256,
            ),
        ),
        DownstreamTask(
            "squad",
            "SQuAD v1.1 reading comprehension (official JSON; its hidden test set -> dev file)",
            _files(
                "squad",
                {"train": ("train-v1.1.json",), "validation": ("dev-v1.1.json",), "test": ("dev-v1.1.json",)},
                readers.read_squad,
            ),
            _squad,
            "f1",
            FinetuneDefaults(
                learning_rate=1e-3,
                max_input_len=512,
                max_target_len=128,
                batch_size=128,
                max_steps=250_000,
                eval_every=10_000,
                max_decode_len=128,
                selection=BEST_VAL_METRIC,
            ),
        ),
        DownstreamTask(
            "code_translation",
            "CodeXGLUE Java -> C# (line-aligned .java / .cs files)",
            _read_code_translation,
            _code,
            "em",
            FinetuneDefaults(
                learning_rate=3e-3,
                max_input_len=1024,
                max_target_len=1024,
                batch_size=32,
                max_steps=150_000,
                eval_every=10_000,
                max_decode_len=1024,
            ),
        ),
        DownstreamTask(
            "retrosynthesis",
            "USPTO-50K single-step retrosynthesis: product -> reactants (CSV)",
            _files(
                "retrosynthesis",
                {
                    "train": ("raw_train.csv", "train.csv"),
                    "validation": ("raw_val.csv", "val.csv", "valid.csv", "validation.csv"),
                    "test": ("raw_test.csv", "test.csv"),
                },
                readers.read_uspto,
            ),
            _smiles,
            "em",
            FinetuneDefaults(
                learning_rate=3e-3,
                max_input_len=256,
                max_target_len=256,
                batch_size=128,
                max_steps=400_000,
                eval_every=10_000,
                max_decode_len=256,
            ),
        ),
        DownstreamTask(
            "pycode_summarize",
            "offline: stdlib Python function -> first docstring line (this interpreter)",
            offline.read_pycode,
            _summary,
            "rouge1",
            FinetuneDefaults(
                learning_rate=1e-2,
                max_input_len=100,
                max_target_len=72,
                batch_size=64,
                max_steps=600,
                eval_every=200,
                max_decode_len=72,
            ),
            needs_data=False,
        ),
        DownstreamTask(
            "smiles_canonicalize",
            "offline: RDKit's 5K NCI molecules, randomized -> canonical SMILES",
            offline.read_smiles,
            _smiles,
            "em",
            FinetuneDefaults(
                learning_rate=1e-2,
                max_input_len=96,
                max_target_len=64,
                batch_size=64,
                max_steps=500,
                eval_every=250,
                max_decode_len=64,
            ),
            needs_data=False,
        ),
    )
}


def get_downstream_task(name: str) -> DownstreamTask:
    """The registered downstream task ``name``; a ``UserError`` naming the nearest one otherwise."""
    return lookup(DOWNSTREAM_TASKS, name, "downstream task")
