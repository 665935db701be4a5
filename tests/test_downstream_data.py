"""Readers of the six App. D formats, the two offline tasks, tokenizers, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synthpre.downstream import offline
from synthpre.downstream.metrics import canonical_smiles
from synthpre.downstream.registry import DOWNSTREAM_TASKS, get_downstream_task
from synthpre.errors import UserError
from synthpre.tokenizer import CharTokenizer, load_pretrained_tokenizer, train_sentencepiece

FIXTURES = Path(__file__).parent / "fixtures" / "downstream"
FIXTURE_DIRS = {
    "cnndm_10k": "cnndm", "mtop": "mtop", "webqsp": "webqsp", "squad": "squad",
    "code_translation": "code_translation", "retrosynthesis": "retrosynthesis",
}  # fmt: skip


@pytest.mark.parametrize("name", list(FIXTURE_DIRS))
def test_every_split_of_every_fixture_reads(name: str) -> None:
    task = get_downstream_task(name)
    for split in ("train", "validation", "test"):
        examples = task.examples(FIXTURES / FIXTURE_DIRS[name], split)
        assert examples and all(e.input and e.target and e.target in e.references for e in examples)


def test_input_formats_follow_app_d2() -> None:
    cnndm = get_downstream_task("cnndm_10k").examples(FIXTURES / "cnndm", "train")[0]
    assert cnndm.input.startswith("summarize: By . Associated Press .")
    assert cnndm.target == "City council votes to keep the old library open .\nThe building opened in 1902 ."
    mtop = get_downstream_task("mtop").examples(FIXTURES / "mtop", "train")[0]
    assert mtop.input.startswith(
        "Has Angelika Kratzer video messaged me ? ; structured knowledge: IN:GET: MESSAGE"
    )
    squad = get_downstream_task("squad").examples(FIXTURES / "squad", "validation")[0]
    assert squad.input.startswith(
        "question: What does increasing the partial pressure of oxygen kill? context: Oxygen"
    )
    assert squad.target == "the anaerobic bacteria" and len(squad.references) == 3
    code = get_downstream_task("code_translation").examples(FIXTURES / "code_translation", "train")[1]
    assert (code.input, code.target) == (
        "public int size() {return mSize;}",
        "public virtual int size(){return mSize;}",
    )
    retro = get_downstream_task("retrosynthesis").examples(FIXTURES / "retrosynthesis", "train")
    # atom-mapped USPTO rows are un-mapped and canonicalized; input = product, target = reactants
    assert (retro[0].input, retro[0].target) == ("CC(=O)Oc1ccccc1", "CC(=O)Cl.Oc1ccccc1")
    assert (retro[2].input, retro[2].target) == ("CCOC(=O)c1ccccc1", "CCO.O=C(O)c1ccccc1")


def _copy(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / FIXTURE_DIRS[name], folder)
    return folder


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    folder = _copy("webqsp", tmp_path)
    lines = (folder / "train.jsonl").read_text().splitlines()
    (folder / "train.jsonl").write_text(lines[0] + '\n{"text_in": "oops"\n')
    with pytest.raises(UserError, match=r"train\.jsonl:2: not a JSON object line"):
        get_downstream_task("webqsp").examples(folder, "train")


def test_missing_fields_are_named(tmp_path: Path) -> None:
    folder = _copy("mtop", tmp_path)
    (folder / "dev.json").write_text(json.dumps([{"text_in": "call mom", "seq_out": "[IN:CREATE_CALL ]"}]))
    with pytest.raises(UserError, match=r"dev\.json: record 0: missing field\(s\) 'struct_in'"):
        get_downstream_task("mtop").examples(folder, "validation")
    squad = _copy("squad", tmp_path)
    data = json.loads((squad / "dev-v1.1.json").read_text())
    del data["data"][0]["paragraphs"][0]["qas"][0]["answers"]
    (squad / "dev-v1.1.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing field 'answers'"):
        get_downstream_task("squad").examples(squad, "validation")


def test_empty_split_and_missing_files(tmp_path: Path) -> None:
    folder = _copy("cnndm_10k", tmp_path)
    (folder / "test.csv").write_text("id,article,highlights\n")
    with pytest.raises(UserError, match="'test' split has no examples"):
        get_downstream_task("cnndm_10k").examples(folder, "test")
    with pytest.raises(UserError, match=r"holds none of its layouts:\n  gln-csv: GLN raw_"):
        get_downstream_task("retrosynthesis").examples(tmp_path, "train")
    with pytest.raises(UserError, match="--data DIR"):
        get_downstream_task("squad").examples(None, "train")


def test_malformed_csv_rows_and_unaligned_files(tmp_path: Path) -> None:
    folder = _copy("retrosynthesis", tmp_path)
    with (folder / "raw_val.csv").open("a") as handle:
        handle.write("US1,1,CCO>>CC,extra\n")
    with pytest.raises(UserError, match=r"raw_val\.csv:3: expected 3 columns"):
        get_downstream_task("retrosynthesis").examples(folder, "validation")
    (folder / "raw_test.csv").write_text("id,class,reactants>reagents>production\nUS2,1,CCO\n")
    with pytest.raises(UserError, match=r"raw_test\.csv:2: reaction 'CCO' is not"):
        get_downstream_task("retrosynthesis").examples(folder, "test")
    code = _copy("code_translation", tmp_path)
    (code / "test.java-cs.txt.cs").write_text("a\nb\n")
    with pytest.raises(UserError, match="must be line-aligned"):
        get_downstream_task("code_translation").examples(code, "test")


def test_smiles_task_is_deterministic_split_by_molecule() -> None:
    splits = offline.smiles_examples.__wrapped__()
    assert splits == offline.smiles_examples()
    assert len(splits["validation"]) == len(splits["test"]) == offline.HELD_OUT_MOLECULES
    train_molecules = {e.target for e in splits["train"]}
    assert len(splits["train"]) == offline.VARIANTS_PER_TRAIN_MOLECULE * len(train_molecules) > 30_000
    val, test = {e.target for e in splits["validation"]}, {e.target for e in splits["test"]}
    assert not (train_molecules & val or train_molecules & test or val & test)
    for e in splits["test"][:50] + splits["train"][:50]:
        assert canonical_smiles(e.input) == e.target and len(e.target) <= offline.MAX_CANONICAL_CHARS


def test_pycode_task_splits_by_qualified_name() -> None:
    splits = offline.pycode_examples()
    assert (
        len(splits["train"]) > 4000
        and 400 < len(splits["validation"]) < 700
        and 400 < len(splits["test"]) < 700
    )
    for split, examples in splits.items():
        for e in examples[:200]:
            assert offline.split_of(e.id, offline.CODE_HELD_OUT) == split
            assert len(e.input) <= offline.CODE_INPUT_CHARS and "def " in e.input
            assert offline.DOCSTRING_CHARS[0] <= len(e.target) <= offline.DOCSTRING_CHARS[1]
    names = [{e.id for e in examples} for examples in splits.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_char_tokenizer_ids_start_at_3_and_round_trip(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.from_texts(["CCO", "c1ccccc1", "N#N"])
    assert tokenizer.alphabet == "#1CNOc"
    assert tokenizer.encode("Oc1#") == [7, 8, 4, 3]
    assert tokenizer.encode("Z") == [2]  # unknown -> unk
    assert tokenizer.decode([0, 7, 8, 1, 300]) == "Oc"  # pad, eos and out-of-range ids are dropped
    assert tokenizer.vocab_size == 9
    tokenizer.save(tmp_path)
    loaded = CharTokenizer.load(tmp_path)
    assert loaded.alphabet == tokenizer.alphabet and loaded.encode("N#N") == tokenizer.encode("N#N")


def test_sentencepiece_trains_offline_with_t5_special_ids(tmp_path: Path) -> None:
    texts = [e.input + "\n" + e.target for e in offline.pycode_examples()["train"][:1500]]
    tokenizer = train_sentencepiece(texts, tmp_path / "tok", vocab_size=500)
    assert (tmp_path / "tok" / "spiece.model").is_file()
    t = tokenizer.tokenizer
    assert (t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2)
    assert t.convert_tokens_to_ids("<extra_id_0>") == tokenizer.vocab_size - 1
    reloaded = load_pretrained_tokenizer(tmp_path / "tok")
    ids = reloaded.encode("def get(self): return self.value")
    assert 1 not in ids and reloaded.decode(ids) == "def get(self): return self.value"
    bare = tmp_path / "bare"  # a folder with only spiece.model, as some T5 downloads
    bare.mkdir()
    shutil.copy(tmp_path / "tok" / "spiece.model", bare / "spiece.model")
    assert load_pretrained_tokenizer(bare).encode("def get(self): return self.value") == ids


def test_tokenizer_folder_that_does_not_load(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        load_pretrained_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="does not load"):
        load_pretrained_tokenizer(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        load_pretrained_tokenizer(tmp_path / "missing")


def test_registry_has_the_app_d3_hyper_parameters() -> None:
    d = {name: task.defaults for name, task in DOWNSTREAM_TASKS.items()}
    assert (d["cnndm_10k"].max_input_len, d["cnndm_10k"].max_target_len, d["cnndm_10k"].max_decode_len) == (
        512,
        256,
        148,
    )
    assert (d["webqsp"].max_input_len, d["webqsp"].batch_size, d["webqsp"].eval_every) == (2048, 32, 5000)
    assert (d["code_translation"].learning_rate, d["code_translation"].batch_size) == (3e-3, 32)
    assert (d["retrosynthesis"].max_steps, d["squad"].max_steps, d["mtop"].max_steps) == (
        400_000,
        250_000,
        100_000,
    )
    assert d["cnndm_10k"].selection_step == 50_000 and d["squad"].selection == "best_val_metric"
    with pytest.raises(UserError, match="Did you mean 'squad'"):
        get_downstream_task("sqad")
