"""Readers for the public files of the six App. D tasks, exactly as a user downloads them.

Every reader returns ``TextExample``s and raises ``UserError`` naming the file (and line or record)
for a malformed record, a missing field or an empty split.  Nothing is fetched: ``--data DIR`` holds
the files; ``SPLIT_FILES`` of each task lists the names looked for.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthpre.errors import UserError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TextExample:
    """One downstream example: the formatted model input, the training target and every accepted answer."""

    id: str
    input: str
    target: str
    references: tuple[str, ...]


def example(id: str, input: str, target: str) -> TextExample:
    return TextExample(id, input, target, (target,))


def find_split_file(data: Path | None, split: str, names: Sequence[str], task: str) -> Path:
    """The first of ``names`` (e.g. ``train.jsonl``) inside ``data``; a ``UserError`` listing them if none."""
    if data is None:
        raise UserError(f"task {task!r} reads local files: set data (--data DIR); see docs/downstream.md")
    data = Path(data)
    if data.is_file() and data.name in names:
        return data
    for name in names:
        if (data / name).is_file():
            return data / name
    raise UserError(f"task {task!r}, split {split!r}: none of {', '.join(names)} in {data}")


def require_examples(examples: list[TextExample], path: Path | str, split: str) -> list[TextExample]:
    if not examples:
        raise UserError(f"{path}: the {split!r} split has no examples")
    return examples


def require_fields(record: object, fields: Sequence[str], where: str) -> dict:
    """The record as a dict holding string values for ``fields``; names the missing ones otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(map(repr, missing))}; it has {sorted(record)}")
    wrong = [f for f in fields if not isinstance(record[f], str)]
    if wrong:
        raise UserError(f"{where}: field(s) {', '.join(map(repr, wrong))} must be strings")
    return record


def iter_json_records(path: Path) -> Iterator[tuple[str, object]]:
    """(location, record) from a JSON array file or a JSONL file; locations are ``file:line`` for JSONL."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        for k, record in enumerate(records):
            yield f"{path}: record {k}", record
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path}:{number}: not a JSON object line ({error.msg} at column {error.colno})"
            ) from None


def iter_csv_rows(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(``file:line``, row) from a CSV file with a header row that names ``fields``."""
    csv.field_size_limit(sys.maxsize)  # news articles exceed csv's 128 KiB default
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [f for f in fields if f not in header]
        if missing:
            raise UserError(
                f"{path}:1: header lacks column(s) {', '.join(map(repr, missing))}; it has {header}"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(row[f] is None for f in fields):
                raise UserError(
                    f"{where}: expected {len(header)} columns ({', '.join(header)}), got another count"
                )
            yield where, row


# --- CNN/DailyMail ----------------------------------------------------------------------------------
CNNDM_TRAIN_SIZE = 10_000  # App. D.1: the first 10K training examples (Krishna et al. 2021)


def read_cnndm(path: Path, split: str, limit: int | None) -> list[TextExample]:
    """CSV (``id,article,highlights``) or JSONL ({"article", "highlights"}): "summarize: " + article."""
    records = (
        iter_csv_rows(path, ("article", "highlights"))
        if path.suffix == ".csv"
        else ((w, require_fields(r, ("article", "highlights"), w)) for w, r in iter_json_records(path))
    )
    examples = []
    for k, (_, record) in enumerate(records):
        if limit is not None and k >= limit:
            break
        examples.append(
            example(str(record.get("id") or k), "summarize: " + record["article"], record["highlights"])
        )
    return require_examples(examples, path, split)


# --- MTOP and WebQSP (UnifiedSKG seq2seq records) -------------------------------------------------
def read_unified_skg(path: Path, split: str) -> list[TextExample]:
    """UnifiedSKG records {"text_in", "struct_in", "seq_out"}; input as App. D.2:
    ``text_in + " ; structured knowledge: " + struct_in``."""
    examples = []
    for k, (where, record) in enumerate(iter_json_records(path)):
        record = require_fields(record, ("text_in", "struct_in", "seq_out"), where)
        text = f"{record['text_in']} ; structured knowledge: {record['struct_in']}"
        examples.append(example(str(record.get("id", k)), text, record["seq_out"]))
    return require_examples(examples, path, split)


# --- SQuAD v1.1 -------------------------------------------------------------------------------------
def read_squad(path: Path, split: str) -> list[TextExample]:
    """The official SQuAD v1.1 JSON; input ``question: Q context: C``, target the first answer,
    references all answers (the official metric takes the max over them)."""
    try:
        root = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        raise UserError(f"{path}: expected the SQuAD layout {{'version': ..., 'data': [articles]}}")
    examples = []
    for a, article in enumerate(root["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or "context" not in paragraph or "qas" not in paragraph:
                raise UserError(f"{where}: missing field 'context' or 'qas'")
            for q, qa in enumerate(paragraph["qas"]):
                qa_where = f"{where}.qas[{q}]"
                require_fields(qa, ("id", "question"), qa_where)
                answers = qa.get("answers")
                if not answers or not all(
                    isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers
                ):
                    raise UserError(
                        f"{qa_where}: missing field 'answers' (a non-empty list of {{'text': ...}})"
                    )
                texts = tuple(x["text"] for x in answers)
                model_input = f"question: {qa['question']} context: {paragraph['context']}"
                examples.append(TextExample(qa["id"], model_input, texts[0], texts))
    return require_examples(examples, path, split)


# --- CodeXGLUE Java -> C# -----------------------------------------------------------------------------
def read_line_aligned(source: Path, target: Path, split: str) -> list[TextExample]:
    """Two line-aligned files (``train.java-cs.txt.java`` / ``.cs``): line i of one translates line i."""
    sources = source.read_text(encoding="utf-8").splitlines()
    targets = target.read_text(encoding="utf-8").splitlines()
    if len(sources) != len(targets):
        raise UserError(
            f"{source} has {len(sources)} lines but {target} has {len(targets)}: they must be line-aligned"
        )
    for number, (s, t) in enumerate(zip(sources, targets, strict=True), start=1):
        if not s.strip() or not t.strip():
            raise UserError(
                f"{source if not s.strip() else target}:{number}: empty line in a line-aligned file"
            )
    examples = [
        example(str(k), s.strip(), t.strip()) for k, (s, t) in enumerate(zip(sources, targets, strict=True))
    ]
    return require_examples(examples, source, split)


# --- USPTO-50K ----------------------------------------------------------------------------------------
REACTION_COLUMNS = ("reactants>reagents>production", "rxn_smiles", "reaction")
_ATOM_MAP = re.compile(r":\d+\]")


def strip_atom_maps(smiles: str) -> str:
    """Canonical SMILES without atom-map numbers (USPTO-50K ships atom-mapped reactions)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return smiles
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(mol)


def read_uspto(path: Path, split: str) -> list[TextExample]:
    """USPTO-50K CSV with a ``reactants>reagents>production`` (or ``rxn_smiles``) column: input the
    product, target the reactants.  Atom-mapped SMILES are un-mapped and canonicalized with RDKit."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    column = next((c for c in REACTION_COLUMNS if c in header), None)
    if column is None:
        raise UserError(
            f"{path}:1: no reaction column; expected one of {list(REACTION_COLUMNS)}, got {header}"
        )
    examples = []
    for where, row in iter_csv_rows(path, (column,)):
        parts = row[column].split(">")
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise UserError(f"{where}: reaction {row[column][:60]!r} is not 'reactants>reagents>product'")
        reactants, product = parts[0], parts[2]
        if _ATOM_MAP.search(row[column]):
            reactants, product = strip_atom_maps(reactants), strip_atom_maps(product)
        examples.append(example(row.get("id") or where, product, reactants))
    return require_examples(examples, path, split)
