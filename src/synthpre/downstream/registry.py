"""The downstream-task registry: reader, input formatting, post-processing, metrics and App. D.3
hyper-parameters of each real task (seqio style: one object bundles everything a run needs).

Six tasks of App. D read the files a user downloaded (``--data DIR``, in any layout of
``synthpre.downstream.layouts``); two tasks are built from data every installation has
(``pycode_summarize``, ``smiles_canonicalize``) and need no ``--data``.  ``text_lm`` (natural-text
language modelling, ``synthpre.downstream.text_lm``) reads local text from ``--data DIR``, or without it
the standard library's docstrings; it is scored by its teacher-forced loss, never decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.downstream import metrics as m
from synthpre.downstream import offline, readers, text_lm
from synthpre.downstream.layouts import TASK_LAYOUTS, Layout, find_layout
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
    max_decode_len: int | None  # None: not decoded (language modelling)
    selection: str = MAX_VAL_TOKEN_ACCURACY  # App. B's rule (``synthpre.train.selection``)
    selection_step: int | None = None  # FIXED_STEP


Scorer = Callable[[Sequence[str], m.References, Sequence[Sequence[str]] | None], dict[str, float]]


@dataclass(frozen=True)
class DownstreamTask:
    name: str
    description: str
    # (predictions, references, beam candidates) -> metrics in percent; None: a language-modelling task,
    # scored by its teacher-forced loss and never decoded
    score: Scorer | None
    headline_metric: str  # the metric that BEST_VAL_METRIC selects on and reports first
    defaults: FinetuneDefaults
    builtin: Callable[[str], list[TextExample]] | None = None  # split -> examples, when there is no --data
    data_layouts: tuple[Layout, ...] = ()  # the layouts of --data of a task outside App. D (TASK_LAYOUTS)
    chars_by_default: bool = False  # no --tokenizer: characters instead of a SentencePiece model
    postprocess: Callable[[str], str] = str.strip  # decoded text -> prediction

    @property
    def needs_data(self) -> bool:
        return self.builtin is None

    @property
    def is_language_model(self) -> bool:
        """Natural-text language modelling: scored by its teacher-forced loss (perplexity), not decoded."""
        return self.score is None

    @property
    def layouts(self) -> tuple[Layout, ...]:
        """The file layouts it reads from ``--data DIR`` (none for the offline tasks)."""
        return TASK_LAYOUTS.get(self.name, self.data_layouts)

    def layout(self, data: Path | None, data_format: str | None = None) -> Layout | None:
        """The layout found in ``data`` (or named by ``data_format``); None where the built-in data is
        used (no ``data``, or a task that reads no files)."""
        if (data is None and self.builtin is not None) or not self.layouts:
            if data_format is not None:
                unless = "unless data (--data DIR) is set" if self.layouts else "only"
                raise UserError(
                    f"data_format (--data-format) {data_format!r}: task {self.name!r} reads its built-in "
                    f"data {unless}"
                )
            return None
        return find_layout(self.name, self.layouts, Path(data) if data else None, data_format)

    @property
    def selection(self) -> dict[str, Any]:
        """The engine settings of its App. B rule: ``selection``, ``selection_metric``, ``selection_step``."""
        d = self.defaults
        return finetune_selection(d.selection, self.headline_metric, d.selection_step)

    @property
    def selection_metric(self) -> str:
        """The metric its checkpoints, and the learning rate of a sweep, are chosen on (App. B)."""
        return self.selection["selection_metric"]

    def examples(self, data: Path | None, split: str, data_format: str | None = None) -> list[TextExample]:
        """The split's examples, read from ``data`` in its layout (``data_format`` forces one)."""
        if split not in readers.SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(readers.SPLITS)}")
        layout = self.layout(data, data_format)
        if layout is None:
            return self.builtin(split)
        return layout.read(layout.split_files(Path(data), split, self.name), split)


def _exact_and_f1(predictions, references, candidates=None) -> dict[str, float]:
    return {"em": m.exact_match(predictions, references), "f1": m.token_f1(predictions, references)}


def _squad(predictions, references, candidates=None) -> dict[str, float]:
    return m.squad_scores(predictions, references)


def _rouge(predictions, references, candidates=None) -> dict[str, float]:
    return m.rouge(predictions, references)


def _code(predictions, references, candidates=None) -> dict[str, float]:
    return {
        **_exact_and_f1(predictions, references),
        "codexglue_bleu": m.codexglue_bleu(predictions, references),
    }


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


DOWNSTREAM_TASKS: dict[str, DownstreamTask] = {
    task.name: task
    for task in (
        DownstreamTask(
            "cnndm_10k",
            "CNN/DailyMail summarization, first 10K training articles",
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
            "MTOP semantic parsing, inputs built as UnifiedSKG's",
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
            "WebQSP semantic parsing (s-expressions), inputs built as UnifiedSKG's",
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
            "SQuAD v1.1 reading comprehension (its hidden test set -> the dev split)",
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
            "CodeXGLUE Java -> C#",
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
            "USPTO-50K single-step retrosynthesis: product -> reactants",
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
            builtin=offline.read_pycode,
            chars_by_default=True,
        ),
        DownstreamTask(
            "smiles_canonicalize",
            "offline: RDKit's 5K NCI molecules, randomized -> canonical SMILES",
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
            builtin=offline.read_smiles,
            chars_by_default=True,
        ),
        DownstreamTask(
            "text_lm",
            "natural-text language modelling: passages of --data DIR's text files, or without --data the "
            "docstrings of this interpreter's standard library",
            None,
            "perplexity",
            FinetuneDefaults(  # measured on a CPU with gpt2-tiny (docs/downstream.md)
                learning_rate=3e-2,
                max_input_len=2,
                max_target_len=256,
                batch_size=16,
                max_steps=300,
                eval_every=30,
                max_decode_len=None,
            ),
            builtin=text_lm.read_docstrings,
            data_layouts=text_lm.TEXT_LAYOUTS,
        ),
    )
}


def get_downstream_task(name: str) -> DownstreamTask:
    """The registered downstream task ``name``; a ``UserError`` naming the nearest one otherwise."""
    return lookup(DOWNSTREAM_TASKS, name, "downstream task")
