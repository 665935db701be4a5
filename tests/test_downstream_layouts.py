"""Every published layout of the App. D datasets, written here in its exact form (file names, columns,
encodings): detected, read, fine-tuned for a step, and bad input on each reader.  ``downstream check``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tests.tiny_runs import run_cli
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream import readers
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.finetune import finetune
from synthpre.downstream.layouts import TASK_LAYOUTS
from synthpre.downstream.readers import mtop_structure
from synthpre.downstream.registry import get_downstream_task
from synthpre.errors import UserError


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


# --- writers of each real layout ---------------------------------------------------------------------
def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def write_saved_to_disk(folder: Path, splits: dict[str, list[dict]]) -> None:
    """``datasets``' ``save_to_disk`` layout: dataset_dict.json, <split>/{state.json, dataset_info.json,
    data-00000-of-00001.arrow} (an Arrow IPC stream)."""
    folder.mkdir(parents=True)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    for split, rows in splits.items():
        table = pa.Table.from_pylist(rows)
        (folder / split).mkdir()
        arrow = folder / split / "data-00000-of-00001.arrow"
        with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
        state = {
            "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
            "_fingerprint": "0",
            "_split": split,
        }
        (folder / split / "state.json").write_text(json.dumps(state))
        (folder / split / "dataset_info.json").write_text(json.dumps({"features": {}}))


def cnndm_rows(split: str, n: int) -> list[dict]:
    return [
        {
            "article": f"({split} {k}) -- The council met on Monday . It voted to keep the library open .",
            "highlights": f"Council keeps library open .\nVote on Monday {k} .",
            "id": f"{split}{k:040d}",
        }
        for k in range(n)
    ]


def squad_rows(split: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{split}-{k}",
            "title": "Oxygen",
            "context": "Oxygen gas is poisonous to anaerobic bacteria .",
            "question": f"What is oxygen poisonous to ({k})?",
            "answers": {"text": ["anaerobic bacteria", "bacteria"], "answer_start": [27, 37]},
        }
        for k in range(n)
    ]


REACTIONS = [
    ("CC(=O)Oc1ccccc1", "CC(=O)Cl.Oc1ccccc1"),
    ("NC1CCNCC1", "CC(C)(C)OC(=O)N1CCC(N)CC1"),
    ("CCOC(=O)c1ccccc1", "CCO.O=C(O)c1ccccc1"),
]
COUNTS = {"train": 3, "validation": 2, "test": 2}


def tsv_pairs(folder: Path, names: dict[str, str], line: Callable[[str, int], str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in names.items():
        (folder / name).write_text("".join(line(split, k) + "\n" for k in range(COUNTS[split])))


AUTHORS = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}


def authors(task: str) -> Callable[[Path], None]:
    """finetuning_data/<task>/{train,valid,test}.txt; one line with two tabs (dropped, as seqio did)."""

    def write(data: Path) -> None:
        tsv_pairs(data / task, AUTHORS, lambda s, k: f"input {s} {k}\ttarget {k}")
        with (data / task / "train.txt").open("a") as handle:
            handle.write("an\textra\ttab\n")

    return write


def mtop_line(split: str, k: int) -> str:
    tokens = {"tokens": ["Has", "Angelika", "Kratzer", "video", "messaged", "me", "?"], "tokenSpans": []}
    return "\t".join(
        [
            f"{split}{k}",
            "IN:GET_MESSAGE",
            "0:3:SL:CONTACT",
            "Has Angelika Kratzer video messaged me?",
            "messaging",
            "en_US",
            "[IN:GET_MESSAGE [SL:CONTACT Angelika Kratzer ] [SL:TYPE_CONTENT video ] [SL:RECIPIENT me ] ]",
            json.dumps(tokens),
        ]
    )


def webqsp_records(split: str) -> str:
    record = {
        "ID": "WebQTrn-0",
        "question": " where is isthmus of panama located? ",
        "answers": [["m.06n3y", "South America"]],
        "kg_tuples": [
            ["m.04zwft", "location.location.containedby", "m.06n3y"],
            ["m.06n3y", "location.location.contains", "m.0c_ys"],
        ],
        "entities": [["Isthmus of Panama", "m.04zwft"]],
        "s_expression": "(JOIN (R location.location.containedby) m.04zwft)",
        "sparql": "PREFIX ns: ...",
    }
    null = {**record, "ID": "WebQTrn-1", "s_expression": "null"}
    return "".join(json.dumps(r) + "\n" for r in [record, null, {**record, "ID": "WebQTrn-2"}])


def write_webqsp(data: Path) -> None:
    (data / "webqsp").mkdir(parents=True)
    for name in ("train", "dev", "test"):
        (data / "webqsp" / f"{name}.jsonl").write_text(webqsp_records(name))


def write_t5chem(data: Path) -> None:
    data.mkdir(parents=True)
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        pairs = REACTIONS[: COUNTS[split]]
        (data / f"{name}.source").write_text("".join(p + "\n" for p, _ in pairs))
        (data / f"{name}.target").write_text("".join(r + "\n" for _, r in pairs))


def write_uspto_table(data: Path, suffix: str) -> None:
    for split in COUNTS:
        rows = [
            {"id": f"{split}{k}", "product": p, "reactants": r}
            for k, (p, r) in enumerate(REACTIONS[: COUNTS[split]])
        ]
        if suffix == "parquet":
            write_parquet(data / "data" / f"{split}-00000-of-00001.parquet", rows)
        else:
            data.mkdir(exist_ok=True)
            name = {"validation": "val"}.get(split, split)
            (data / f"{name}.csv").write_text(
                "\ufeffid,reactants,product\n"
                + "".join(f"{r['id']},{r['reactants']},{r['product']}\n" for r in rows)
            )


def write_cnndm_parquet(data: Path) -> None:
    rows = cnndm_rows("train", 5)
    for shard, chunk in enumerate((rows[:2], rows[2:4], rows[4:])):
        write_parquet(data / "3.0.0" / f"train-{shard:05d}-of-00003.parquet", chunk)
    for split in ("validation", "test"):
        write_parquet(data / "3.0.0" / f"{split}-00000-of-00001.parquet", cnndm_rows(split, 2))


# (task, layout) -> (writer of the folder, examples expected per split)
LAYOUT_CASES: dict[tuple[str, str], tuple[Callable[[Path], None], dict[str, int]]] = {
    ("cnndm_10k", "hf-parquet"): (write_cnndm_parquet, {"train": 5, "validation": 2, "test": 2}),
    ("cnndm_10k", "hf-disk"): (
        lambda d: write_saved_to_disk(d, {s: cnndm_rows(s, n) for s, n in COUNTS.items()}),
        COUNTS,
    ),
    ("cnndm_10k", "csv-jsonl"): (
        lambda d: tsv_pairs(
            d,
            {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"},
            lambda s, k: json.dumps(cnndm_rows(s, k + 1)[k]),
        ),
        COUNTS,
    ),
    ("cnndm_10k", "authors-tsv"): (authors("cnndm_10k"), COUNTS),
    ("mtop", "unifiedskg-raw"): (
        lambda d: tsv_pairs(
            d / "mtop" / "en", {"train": "train.txt", "validation": "eval.txt", "test": "test.txt"}, mtop_line
        ),
        COUNTS,
    ),
    ("mtop", "unifiedskg-seq2seq"): (
        lambda d: tsv_pairs(
            d,
            {"train": "train.json", "validation": "dev.json", "test": "test.json"},
            lambda s, k: json.dumps(
                {"text_in": f"call {k}", "struct_in": "IN:CREATE: CALL", "seq_out": "[IN:CREATE_CALL ]"}
            ),
        ),
        COUNTS,
    ),
    ("mtop", "authors-tsv"): (authors("mtop"), COUNTS),
    ("webqsp", "unifiedskg-raw"): (write_webqsp, {"train": 2, "validation": 3, "test": 3}),
    ("webqsp", "authors-tsv"): (authors("webqsp"), COUNTS),
    ("squad", "hf-parquet"): (
        lambda d: [
            write_parquet(d / "plain_text" / f"{s}-00000-of-00001.parquet", squad_rows(s, n))
            for s, n in (("train", 3), ("validation", 2))
        ],
        {"train": 3, "validation": 2, "test": 2},
    ),
    ("squad", "hf-disk"): (
        lambda d: write_saved_to_disk(
            d, {"train": squad_rows("train", 3), "validation": squad_rows("validation", 2)}
        ),
        {"train": 3, "validation": 2, "test": 2},
    ),
    ("code_translation", "authors-tsv"): (authors("code_translation"), COUNTS),
    ("retrosynthesis", "t5chem"): (write_t5chem, COUNTS),
    ("retrosynthesis", "hf-parquet"): (lambda d: write_uspto_table(d, "parquet"), COUNTS),
    ("retrosynthesis", "csv"): (lambda d: write_uspto_table(d, "csv"), COUNTS),
    ("retrosynthesis", "authors-tsv"): (authors("retrosynthesis"), COUNTS),
}
FIXTURES = Path(__file__).parent / "fixtures" / "downstream"
FIXTURE_LAYOUTS = {
    ("cnndm_10k", "csv-jsonl"): "cnndm",
    ("mtop", "unifiedskg-seq2seq"): "mtop",
    ("webqsp", "unifiedskg-seq2seq"): "webqsp",
    ("squad", "official"): "squad",
    ("code_translation", "codexglue"): "code_translation",
    ("retrosynthesis", "gln-csv"): "retrosynthesis",
}


def test_every_layout_has_a_case() -> None:
    declared = {(task, layout.name) for task, layouts in TASK_LAYOUTS.items() for layout in layouts}
    assert declared == set(LAYOUT_CASES) | set(FIXTURE_LAYOUTS)


@pytest.mark.parametrize(("task", "layout"), list(FIXTURE_LAYOUTS))
def test_the_fixture_folders_are_detected_as_their_layouts(task: str, layout: str) -> None:
    assert get_downstream_task(task).layout(FIXTURES / FIXTURE_LAYOUTS[(task, layout)]).name == layout


@pytest.mark.parametrize(("task", "layout"), list(LAYOUT_CASES))
def test_layout_is_detected_read_and_fine_tunes(task: str, layout: str, tmp_path: Path) -> None:
    write, counts = LAYOUT_CASES[(task, layout)]
    data = tmp_path / "data"
    write(data)
    downstream = get_downstream_task(task)
    assert downstream.layout(data).name == layout
    for split, n in counts.items():
        examples = downstream.examples(data, split)
        assert len(examples) == n and all(e.input and e.target in e.references for e in examples)
    run = tmp_path / "run"
    config = FinetuneConfig(
        task=task,
        out_dir=str(run),
        data=str(data),
        model="t5-tiny",
        tokenizer="chars",
        max_steps=1,
        eval_every=1,
        batch_size=2,
        max_input_len=32,
        max_target_len=16,
        max_decode_len=4,
        eval_decode=1,
        progress=False,
    )
    results = finetune(config)
    assert results["steps"] == 1
    saved = json.loads((run / "config.json").read_text())["finetune"]
    assert saved["data_format"] == layout and saved["data"] == str(data)


def test_inputs_are_built_as_their_sources_build_them(tmp_path: Path) -> None:
    LAYOUT_CASES[("mtop", "unifiedskg-raw")][0](tmp_path / "mtop")
    mtop = get_downstream_task("mtop").examples(tmp_path / "mtop", "train")[0]
    # the paper's App. D.2 example, word for word (its line breaks are the PDF's)
    assert mtop.input.startswith(
        "Has Angelika Kratzer video messaged me ? ; structured knowledge: IN:GET: MESSAGE, "
        "WEATHER, ALARM, INFO_RECIPES, STORIES_NEWS, REMINDER, RECIPES, EVENT"
    )
    assert mtop.input.endswith("| IN:DISLIKE: MUSIC | IN:DISPREFER:  | IN:HELP: REMINDER | IN:FOLLOW: MUSIC")
    assert "| IN:SEND: MESSAGE | IN:SET: UNAVAILABLE, RSVP_YES, AVAILABLE," in mtop_structure()
    assert (
        mtop.target
        == "[IN:GET_MESSAGE [SL:CONTACT Angelika Kratzer ] [SL:TYPE_CONTENT video ] [SL:RECIPIENT me ] ]"
    )
    write_webqsp(tmp_path / "webqsp")
    webqsp = get_downstream_task("webqsp")
    train, dev = (
        webqsp.examples(tmp_path / "webqsp", "train"),
        webqsp.examples(tmp_path / "webqsp", "validation"),
    )
    assert [e.id for e in train] == ["WebQTrn-0", "WebQTrn-2"] and dev[1].target == "null"
    assert train[0].input == (
        "where is isthmus of panama located? ; structured knowledge: Isthmus of Panama: m.04zwft | "
        "m.04zwft location.location.containedby m.06n3y | m.06n3y location.location.contains m.0c_ys"
    )
    LAYOUT_CASES[("squad", "hf-parquet")][0](tmp_path / "squad")
    squad = get_downstream_task("squad").examples(tmp_path / "squad", "test")[0]
    assert squad.input == (
        "question: What is oxygen poisonous to (0)? context: Oxygen gas is poisonous to anaerobic bacteria ."
    )
    assert squad.references == ("anaerobic bacteria", "bacteria")
    write_cnndm_parquet(tmp_path / "cnndm")
    cnndm = get_downstream_task("cnndm_10k").examples(tmp_path / "cnndm", "train")
    assert [e.id for e in cnndm] == [f"train{k:040d}" for k in range(5)]  # shards in order
    assert cnndm[0].input.startswith("summarize: (train 0)") and cnndm[0].target.endswith(
        "\nVote on Monday 0 ."
    )
    authors("retrosynthesis")(tmp_path / "retro")
    pairs = get_downstream_task("retrosynthesis").examples(tmp_path / "retro", "train")
    assert [(e.input, e.target) for e in pairs] == [(f"input train {k}", f"target {k}") for k in range(3)]
    write_t5chem(tmp_path / "t5chem")
    assert [
        (e.input, e.target)
        for e in get_downstream_task("retrosynthesis").examples(tmp_path / "t5chem", "train")
    ] == REACTIONS


def test_data_format_names_a_layout_and_detection_says_what_it_looked_for(tmp_path: Path) -> None:
    task = get_downstream_task("retrosynthesis")
    write_t5chem(tmp_path / "both")
    write_uspto_table(tmp_path / "both", "csv")
    assert task.layout(tmp_path / "both").name == "t5chem"
    assert task.layout(tmp_path / "both", "csv").name == "csv"
    assert task.examples(tmp_path / "both", "validation", "csv")[0].id == "validation0"
    with pytest.raises(
        UserError, match=r"--data-format\) 'gln': task 'retrosynthesis' reads gln-csv, t5chem"
    ):
        task.layout(tmp_path / "both", "gln")
    with pytest.raises(
        UserError, match=r"holds none of its layouts:\n  gln-csv: GLN raw_\{train,val,test\}\.csv"
    ):
        task.layout(tmp_path)
    with pytest.raises(UserError, match=r"data \(--data\) .*missing: no such folder"):
        task.layout(tmp_path / "missing")
    (tmp_path / "only_train").mkdir()
    (tmp_path / "only_train" / "train.source").write_text("C\n")
    (tmp_path / "only_train" / "train.target").write_text("C\n")
    with pytest.raises(UserError, match=r"split 'test': no T5Chem .* file for it in"):
        task.examples(tmp_path / "only_train", "test")


# --- bad input: exit 2, file and line named, nothing written ---------------------------------------------
def _finetune_cli(task: str, data: Path, out: Path, capsys) -> tuple[int, str]:
    return run_cli(
        [
            "finetune",
            "--task",
            task,
            "--data",
            str(data),
            "--model",
            "t5-tiny",
            "--tokenizer",
            "chars",
            "--max-steps",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
        capsys,
    )


def test_csv_cut_off_inside_a_quoted_field_is_an_error(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    LAYOUT_CASES[("cnndm_10k", "csv-jsonl")][0](data)
    for name in ("train", "val", "test"):
        (data / f"{name}.jsonl").unlink()
    rows = "".join(f'{r["id"]},"{r["article"]}","{r["highlights"]}"\n' for r in cnndm_rows("t", 3))
    (data / "train.csv").write_text("id,article,highlights\n" + rows + 'x,"an article cut off in the mid')
    for split in ("validation", "test"):
        (data / f"{split}.csv").write_text("id,article,highlights\n" + rows)
    code, err = _finetune_cli("cnndm_10k", data, tmp_path / "run", capsys)
    assert code == 2 and "train.csv:8: not valid CSV (unexpected end of data)" in err and "cut off" in err
    assert not (tmp_path / "run").exists()


def test_byte_order_marks_are_accepted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_uspto_table(data, "csv")  # its CSV files start with a BOM
    assert (data / "train.csv").read_bytes().startswith(b"\xef\xbb\xbfid,")
    assert [e.id for e in get_downstream_task("retrosynthesis").examples(data, "train")] == [
        "train0",
        "train1",
        "train2",
    ]
    squad = tmp_path / "squad"
    squad.mkdir()
    text = (FIXTURES / "squad" / "dev-v1.1.json").read_text()
    (squad / "dev-v1.1.json").write_text("\ufeff" + text)
    assert get_downstream_task("squad").examples(squad, "validation")[0].id == "571c8539dd7acb1400e4c0e8"
    webqsp = tmp_path / "webqsp"
    write_webqsp(webqsp)
    path = webqsp / "webqsp" / "train.jsonl"
    path.write_text("\ufeff" + path.read_text())
    assert len(get_downstream_task("webqsp").examples(webqsp, "train")) == 2


@pytest.mark.parametrize(
    ("task", "layout", "damage", "message"),
    [
        (
            "mtop",
            "unifiedskg-raw",
            lambda d: (d / "mtop/en/eval.txt").write_text("a\tb\n"),
            r"eval\.txt:1: expected 8 tab-separated columns",
        ),
        (
            "mtop",
            "unifiedskg-raw",
            lambda d: (d / "mtop/en/eval.txt").write_text(""),
            r"eval\.txt: the file is empty",
        ),
        (
            "webqsp",
            "unifiedskg-raw",
            lambda d: (d / "webqsp/dev.jsonl").write_text(
                '{"ID": "x", "question": "q", "s_expression": "null", "entities": []}\n'
            ),
            r"dev\.jsonl:1: missing field\(s\) 'kg_tuples'",
        ),
        (
            "squad",
            "hf-parquet",
            lambda d: write_parquet(
                d / "plain_text/validation-00000-of-00001.parquet",
                [{"id": "1", "question": "q", "context": "c"}],
            ),
            r"validation-00000-of-00001\.parquet: no column\(s\) 'answers'",
        ),
        (
            "cnndm_10k",
            "hf-parquet",
            lambda d: (d / "3.0.0/test-00000-of-00001.parquet").write_bytes(b"PAR1 not parquet"),
            r"test-00000-of-00001\.parquet: not a readable parquet file",
        ),
        ("retrosynthesis", "t5chem", lambda d: (d / "test.target").write_text("C\n"), "must be line-aligned"),
        (
            "retrosynthesis",
            "authors-tsv",
            lambda d: (d / "retrosynthesis/valid.txt").write_text("no tab here\n"),
            r"valid\.txt: the 'validation' split has no examples",
        ),
    ],
)
def test_bad_files_exit_2_naming_file_line_and_field(
    task, layout, damage, message, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    LAYOUT_CASES[(task, layout)][0](data)
    damage(data)
    code, err = _finetune_cli(task, data, tmp_path / "run", capsys)
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_data_folder_that_does_not_exist(tmp_path: Path, capsys) -> None:
    code, err = _finetune_cli("squad", tmp_path / "nowhere", tmp_path / "run", capsys)
    assert code == 2 and "data (--data)" in err and "nowhere: no such folder" in err
    assert not (tmp_path / "run").exists()


# --- synthpre downstream check ---------------------------------------------------------------------------
def test_downstream_check_reports_layout_counts_lengths_and_truncation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_cnndm_parquet(data)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(
        app,
        [
            "downstream",
            "check",
            "--task",
            "cnndm_10k",
            "--data",
            str(data),
            "--tokenizer",
            "chars",
            "--max-input-len",
            "80",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "task cnndm_10k: hf-parquet layout (HF cnn_dailymail 3.0.0" in out and str(data) in out
    assert "input:  summarize: (train 0) -- The council met" in out
    assert "target: Council keeps library open .\\nVote on Monday 0 ." in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["train"], ["test"])
    }
    # 5 train articles of 85-86 characters: with --max-input-len 80 every one is cut; targets (39) are not
    assert rows["train"][:3] == ["train", "5", "input"] and rows["train"][-4:] == ["5", "(100.0%)", ">", "80"]
    assert "0 (0.0%) > 256" in out and rows["test"][1] == "2"
    assert sorted(tmp_path.rglob("*")) == before  # writes nothing
    bad = CliRunner().invoke(
        app, ["downstream", "check", "--task", "cnndm_10k", "--data", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 or isinstance(bad.exception, UserError)


def test_a_bad_byte_deep_in_a_large_csv_is_found_while_parsing(tmp_path: Path) -> None:
    """CSV files are not read whole before parsing: a bad byte past the first 64 KiB still names the file."""
    path = tmp_path / "train.csv"
    rows = "".join(f"{k},an article {k},a summary\n" for k in range(5000))
    path.write_bytes(b"id,article,highlights\n" + rows.encode() + b"5000,\xff,x\n")
    with pytest.raises(UserError, match=r"train\.csv: not UTF-8 text \(at or after line (\d+)\)") as error:
        list(readers.iter_csv_rows(path, ("article", "highlights")))
    assert 1000 < int(re.search(r"line (\d+)", str(error.value)).group(1)) <= 5002  # the bad byte is on 5002
