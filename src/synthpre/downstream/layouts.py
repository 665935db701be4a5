"""The published file layouts of each App. D task, and which one a ``--data DIR`` folder holds.

A ``Layout`` names the files of each split (``find``) and the parser of those files (``read``).  The
first layout of a task whose files are in the folder is used, unless ``data_format`` (``--data-format``)
names one; the run's ``config.json`` records the layout found, so evaluation reads the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthpre.downstream import readers
from synthpre.downstream.readers import SPLITS, TextExample
from synthpre.errors import UserError, close_match

Finder = Callable[[Path, str], list[Path]]  # (data folder, split) -> the split's files, [] if absent


@dataclass(frozen=True)
class Layout:
    name: str  # what --data-format calls it
    files: str  # the files, as a user would recognise them
    find: Finder
    read: Callable[[list[Path], str], list[TextExample]]
    marker: str | None = None  # a key of the first JSON record that tells it from a layout of the same names

    def present(self, data: Path) -> bool:
        files = next((f for split in SPLITS if (f := self.find(data, split))), None)
        return bool(files) and (self.marker is None or first_record_has(files[0], self.marker))

    def split_files(self, data: Path, split: str, task: str) -> list[Path]:
        files = self.find(data, split)
        if not files:
            raise UserError(f"task {task!r}, split {split!r}: no {self.files} file for it in {data}")
        return files


def named(names: dict[str, Sequence[str]], subfolders: Sequence[str] = ("",)) -> Finder:
    """The first of ``names[split]`` that exists, in the folder or one of its ``subfolders``."""

    def find(data: Path, split: str) -> list[Path]:
        for sub in subfolders:
            for name in names.get(split, ()):
                if (data / sub / name).is_file():
                    return [data / sub / name]
        return []

    return find


def sharded(names: dict[str, Sequence[str]], subfolders: Sequence[str] = ("",)) -> Finder:
    """Every ``<name>-*.parquet`` shard of the split (HF Hub layout), in order."""

    def find(data: Path, split: str) -> list[Path]:
        for sub in subfolders:
            for name in names.get(split, ()):
                shards = sorted((data / sub).glob(f"{name}-*.parquet"))
                if shards:
                    return shards
        return []

    return find


def saved_to_disk(names: dict[str, Sequence[str]]) -> Finder:
    """``datasets``' ``save_to_disk`` folder: ``<split>/state.json`` naming its ``.arrow`` files."""

    def find(data: Path, split: str) -> list[Path]:
        for name in names.get(split, ()):
            state = data / name / "state.json"
            if state.is_file():
                try:
                    files = [
                        data / name / f["filename"] for f in json.loads(state.read_text())["_data_files"]
                    ]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise UserError(f"{state}: not a `save_to_disk` state file (no '_data_files')") from None
                return files
        return []

    return find


def paired(names: dict[str, Sequence[str]], suffixes: tuple[str, str]) -> Finder:
    """Two line-aligned files ``<name><suffix>`` per split (both must exist)."""

    def find(data: Path, split: str) -> list[Path]:
        for name in names.get(split, ()):
            files = [data / f"{name}{s}" for s in suffixes]
            if all(f.is_file() for f in files):
                return files
        return []

    return find


def first_record_has(path: Path, key: str) -> bool:
    try:
        _, record = next(readers.iter_json_records(path))
    except (StopIteration, UserError):
        return False
    return isinstance(record, dict) and key in record


def extensions(names: dict[str, Sequence[str]], *exts: str) -> dict[str, tuple[str, ...]]:
    return {split: tuple(f"{n}.{e}" for n in stems for e in exts) for split, stems in names.items()}


HF_SPLITS = {"train": ("train",), "validation": ("validation",), "test": ("test",)}
TRAIN_VAL_TEST = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}


def authors_tsv(task: str, limit: int | None = None) -> Layout:
    """The paper authors' released ``finetuning_data/<task>/{train,valid,test}.txt`` (``input<TAB>target``,
    already formatted), read by their seqio task as ``TextLineDataSource`` + ``translation_processors``."""
    return Layout(
        "authors-tsv",
        f"the authors' finetuning_data/{task}/{{train,valid,test}}.txt (input<TAB>target)",
        named({"train": ("train.txt",), "validation": ("valid.txt",), "test": ("test.txt",)}, ("", task)),
        lambda paths, split: readers.read_tab_pairs(paths[0], split, limit if split == "train" else None),
    )


def hf_disk(read: Callable[[list[Path], str], list[TextExample]], names=HF_SPLITS) -> Layout:
    return Layout("hf-disk", "datasets' save_to_disk folders ({train,validation,test}/state.json + .arrow)",
                  saved_to_disk(names), read)  # fmt: skip


SKG_SPLITS = {"train": ("train",), "validation": ("dev", "validation", "valid"), "test": ("test",)}

TASK_LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "cnndm_10k": (
        Layout("hf-parquet", "HF cnn_dailymail 3.0.0 {train,validation,test}-*-of-*.parquet",
               sharded(HF_SPLITS, ("", "3.0.0")), readers.read_cnndm),
        hf_disk(readers.read_cnndm),
        Layout("csv-jsonl", "{train,validation|val,test}.{csv,jsonl} with article, highlights",
               named(extensions(TRAIN_VAL_TEST, "csv", "jsonl")), readers.read_cnndm),
        authors_tsv("cnndm_10k", readers.CNNDM_TRAIN_SIZE),
    ),
    "mtop": (
        Layout("unifiedskg-raw", "MTOP's mtop/en/{train,eval,test}.txt (8-column TSV, as UnifiedSKG reads)",
               named({"train": ("train.txt",), "validation": ("eval.txt",), "test": ("test.txt",)},
                     ("", "en", "mtop/en")),
               lambda paths, split: readers.read_mtop_tsv(paths[0], split)),
        Layout("unifiedskg-seq2seq", "{train,dev,test}.{json,jsonl} records with text_in, struct_in, seq_out",
               named(extensions(SKG_SPLITS, "json", "jsonl")), readers.read_unified_skg, marker="text_in"),
        authors_tsv("mtop"),
    ),
    "webqsp": (
        Layout("unifiedskg-raw", "UnifiedSKG's webqsp/{train,dev,test}.jsonl (ID, question, kg_tuples, ...)",
               named(extensions(SKG_SPLITS, "jsonl"), ("", "webqsp")),
               lambda paths, split: readers.read_webqsp_jsonl(paths[0], split), marker="kg_tuples"),
        Layout("unifiedskg-seq2seq", "{train,dev,test}.{json,jsonl} records with text_in, struct_in, seq_out",
               named(extensions(SKG_SPLITS, "json", "jsonl")), readers.read_unified_skg, marker="text_in"),
        authors_tsv("webqsp"),
    ),
    "squad": (
        Layout("official", "the official train-v1.1.json, dev-v1.1.json (test = dev: the test set is hidden)",
               named({"train": ("train-v1.1.json",), "validation": ("dev-v1.1.json",),
                      "test": ("dev-v1.1.json",)}),
               readers.read_squad),
        Layout("hf-parquet", "HF squad plain_text/{train,validation}-*-of-*.parquet (test = validation)",
               sharded({**HF_SPLITS, "test": ("validation",)}, ("", "plain_text")), readers.read_squad_table),
        hf_disk(readers.read_squad_table, {**HF_SPLITS, "test": ("validation",)}),
    ),
    "code_translation": (
        Layout("codexglue", "CodeXGLUE {train,valid,test}.java-cs.txt.{java,cs} (line-aligned)",
               paired({"train": ("train",), "validation": ("valid",), "test": ("test",)},
                      (".java-cs.txt.java", ".java-cs.txt.cs")),
               readers.read_line_aligned),
        authors_tsv("code_translation"),
    ),
    "retrosynthesis": (
        Layout("gln-csv", "GLN raw_{train,val,test}.csv (id,class,reactants>reagents>production)",
               named({"train": ("raw_train.csv",), "validation": ("raw_val.csv",),
                      "test": ("raw_test.csv",)}),
               readers.read_uspto),
        Layout("t5chem", "T5Chem USPTO_50k {train,val,test}.{source,target} (product / reactants lines)",
               paired({"train": ("train",), "validation": ("val", "valid"), "test": ("test",)},
                      (".source", ".target")),
               readers.read_line_aligned),
        Layout("hf-parquet", "HF {train,validation,test}-*.parquet with reactants, product",
               sharded(TRAIN_VAL_TEST, ("", "data")), readers.read_uspto),
        Layout("csv", "{train,val,test}.csv with a reaction column or reactants, product",
               named(extensions(TRAIN_VAL_TEST, "csv")), readers.read_uspto),
        authors_tsv("retrosynthesis"),
    ),
}  # fmt: skip


def find_layout(
    task: str, layouts: Sequence[Layout], data: Path | None, data_format: str | None = None
) -> Layout:
    """The one of ``task``'s ``layouts`` that ``data`` holds (or the one ``data_format`` names)."""
    if data is None:
        raise UserError(f"task {task!r} reads local files: set data (--data DIR); see docs/downstream.md")
    if not data.exists():
        raise UserError(f"data (--data) {data}: no such folder")
    if not data.is_dir():
        raise UserError(f"data (--data) {data}: not a folder; pass the folder that holds the files")
    if data_format is not None:
        by_name = {layout.name: layout for layout in layouts}
        if data_format not in by_name:
            near = close_match(data_format, by_name)
            raise UserError(
                f"data_format (--data-format) {data_format!r}: task {task!r} reads {', '.join(by_name)}"
                + (f"; did you mean {near!r}?" if near else "")
            )
        return by_name[data_format]
    for layout in layouts:
        if layout.present(data):
            return layout
    expected = "\n".join(f"  {layout.name}: {layout.files}" for layout in layouts)
    raise UserError(f"task {task!r}: {data} holds none of its layouts:\n{expected}")
