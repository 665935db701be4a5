"""``text_lm``: the passage splitter, the local-text layouts, the standard library's docstring corpus,
a tiny causal fine-tune that records the loss-against-tokens curve, its test loss and perplexity, and
bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.tiny_runs import run_cli
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream import text_lm
from synthpre.downstream.readers import SPLITS
from synthpre.downstream.registry import get_downstream_task
from synthpre.downstream.text_lm import PASSAGE_CHARS, passages, split_by_hash

TASK = get_downstream_task("text_lm")
TINY_RUN = ["--model", "gpt2-tiny", "--tokenizer", "chars", "--batch-size", "4", "--max-target-len", "64",
            "--max-steps", "4", "--eval-every", "2", "--no-progress"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test on one thread (tests/conftest.py)."""


def words(text: str) -> list[str]:
    return text.split()


def test_passages_merge_paragraphs_and_cut_long_ones_at_whitespace() -> None:
    short = ["First paragraph,\nwrapped over two lines.", "Second one.", "  Third, indented.  "]
    long = " ".join(f"word{k}" for k in range(60))  # 469 characters, no blank line
    text = "\r\n\r\n".join(short) + "\n\n   \n\n" + long + "\n\n\n" + "x" * 250 + "\n"
    found = passages(text, max_chars=100)
    assert found[0] == "First paragraph,\nwrapped over two lines.\n\nSecond one.\n\nThird, indented."
    assert all(0 < len(p) <= 100 and p == p.strip() for p in found)
    assert words(" ".join(found)) == words(text.replace("x" * 250, " ".join(["x" * 100] * 2 + ["x" * 50])))
    long_pieces = [p for p in found if p.startswith("word") or " word" in p]
    assert all(p.split()[-1].startswith("word") for p in long_pieces)  # cut between words, not inside
    assert found[-3:] == ["x" * 100, "x" * 100, "x" * 50]  # a word longer than a passage is cut mid-word
    assert passages(text, max_chars=100) == found
    assert passages("one\n\ntwo") == ["one\n\ntwo"] and passages(" \n\n\t\n") == []


def test_split_by_hash_is_deterministic_and_holds_out_8_percent() -> None:
    keys = [f"doc{k}.txt" for k in range(100)]
    splits = split_by_hash(keys)
    assert splits == split_by_hash(list(reversed(keys)))
    assert sorted(splits.values()).count("test") == sorted(splits.values()).count("validation") == 8
    assert set(split_by_hash(["a", "b", "c"]).values()) == set(SPLITS)


def write_splits(data: Path, validation_name: str) -> None:
    data.mkdir()
    for split, name in (("train", "train"), ("validation", validation_name), ("test", "test")):
        paragraphs = [
            f"The {split} text, paragraph {k}: " + "some words " * 55 for k in range(4)
        ]  # too long to merge
        (data / f"{name}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")


@pytest.mark.parametrize("validation_name", ["validation", "valid", "val"])
def test_split_files_layout(validation_name: str, tmp_path: Path) -> None:
    data = tmp_path / "text"
    write_splits(data, validation_name)
    assert TASK.layout(data).name == "text-splits"
    for split in SPLITS:
        examples = TASK.examples(data, split)
        assert len(examples) == 4 and all(
            e.input == "" and e.target.startswith(f"The {split}") for e in examples
        )
        assert all(e.references == (e.target,) and len(e.target) <= PASSAGE_CHARS for e in examples)


def test_folder_of_text_files_is_split_by_a_hash_of_each_path(tmp_path: Path) -> None:
    data = tmp_path / "books"
    for k in range(30):
        path = data / ("part2" if k % 2 else "part1") / f"book{k}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"\ufeffBook {k}.\n\nIt was a dark night.", encoding="utf-8")
    assert TASK.layout(data).name == "text-folder"
    expected = split_by_hash([path.relative_to(data).as_posix() for path in data.rglob("*.txt")])
    for split in SPLITS:
        books = {e.target.split(".")[0] for e in TASK.examples(data, split)}
        assert books == {f"Book {Path(key).stem[4:]}" for key, chosen in expected.items() if chosen == split}
        assert len(books) == {"train": 26, "validation": 2, "test": 2}[split]


def test_the_docstring_corpus_is_deterministic_and_its_splits_disjoint() -> None:
    documents = text_lm.docstring_documents()
    corpus = text_lm.docstring_passages()
    assert corpus == text_lm.split_documents(dict(reversed(documents.items())))  # order does not matter
    modules = {split: {e.id.split("#")[0] for e in corpus[split]} for split in SPLITS}
    assert not (modules["train"] & modules["validation"] or modules["train"] & modules["test"])
    assert not modules["validation"] & modules["test"] and set().union(*modules.values()) == set(documents)
    assert "os" in documents and "Return the" in documents["os"]
    assert len(corpus["train"]) > 1000 and min(len(corpus["validation"]), len(corpus["test"])) > 50
    assert all(e.input == "" and 0 < len(e.target) <= PASSAGE_CHARS for es in corpus.values() for e in es)
    assert TASK.examples(None, "validation") == corpus["validation"]


def test_tiny_causal_run_records_its_loss_curve_and_evaluates_test_loss(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, err = run_cli(["finetune", "--task", "text_lm", "--train-size", "32", "--val-size", "8",
                         *TINY_RUN, "--out", str(run)], capsys)  # fmt: skip
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["finetune"]["eval_decode"] == 0 and config["train"]["max_input_len"] == 2
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["split"] == "val"]
    assert [e["step"] for e in evals] == [2, 4] and evals[0]["tokens"] < evals[1]["tokens"]
    assert all(e["val_loss"] > 0 and "val_em" not in e for e in evals)
    assert evals[1]["tokens"] <= 4 * 4 * (
        1 + 64
    )  # 4 steps of 4 rows `EOS passage EOS`, at most 64 + 1 tokens
    code, err = run_cli(["evaluate", str(run), "--split", "test", "--limit", "16", "--no-progress"], capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert (
        metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
        and 0 <= metrics["token_accuracy"] <= 100
    )
    assert metrics["num_examples"] == 16 and metrics["tokens"] <= 16 * 64
    assert not (run / "eval" / "test" / "predictions.jsonl").exists()
    code, err = run_cli(["evaluate", str(run), "--beams", "2"], capsys)
    assert code == 2 and "never decoded" in err


def test_list_and_check_show_text_lm(tmp_path: Path) -> None:
    data = tmp_path / "text"
    write_splits(data, "valid")
    listed = CliRunner().invoke(app, ["downstream", "list"], env={"COLUMNS": "200"})
    assert (
        listed.exit_code == 0 and "text_lm" in listed.output and "--data-format text-folder" in listed.output
    )
    checked = CliRunner().invoke(
        app, ["downstream", "check", "--task", "text_lm", "--data", str(data), "--tokenizer", "chars"]
    )
    assert checked.exit_code == 0, checked.output
    assert "text-splits layout" in checked.output and "validation" in checked.output


def test_bad_text_exits_2_naming_the_file_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    empty_file = tmp_path / "blank"
    write_splits(empty_file, "validation")
    (empty_file / "test.txt").write_text(" \n\n", encoding="utf-8")
    latin1 = tmp_path / "latin1"
    write_splits(latin1, "validation")
    (latin1 / "train.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    too_few = tmp_path / "few"
    too_few.mkdir()
    (too_few / "a.txt").write_text("one book", encoding="utf-8")
    cases = [
        (empty_folder, f"{empty_folder} holds none of its layouts"),
        (empty_file, f"{empty_file / 'test.txt'}: the file is empty"),
        (latin1, f"{latin1 / 'train.txt'}: not UTF-8 text (byte 3)"),
        (too_few, "1 .txt file(s), but a folder of text files needs at least 3"),
    ]
    for data, message in cases:
        args = ["finetune", "--task", "text_lm", "--data", str(data), *TINY_RUN, "--out", str(out)]
        code, err = run_cli(args, capsys)
        assert code == 2 and message in err, (data, err)
        assert not out.exists()
