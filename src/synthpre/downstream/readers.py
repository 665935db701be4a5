"""Parsers for the public files of the six App. D tasks, exactly as a user downloads them.

Each parser turns one split's file(s) into ``TextExample``s and raises ``UserError`` naming the file
(and line, record or row) for a malformed record, a missing field or an empty split.  Which files make
up a split, for each published layout, is ``synthpre.downstream.layouts``'s business.

Text files are read as UTF-8 with an optional byte-order mark; CSV is parsed in strict mode, so a
file cut off inside a quoted field is an error, not one long last row.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthpre.errors import UserError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

Rows = Iterable[tuple[str, dict]]  # (location such as ``file:line`` or ``file: row 3``, record)


@dataclass(frozen=True)
class TextExample:
    """One downstream example: the formatted model input, the training target and every accepted answer."""

    id: str
    input: str
    target: str
    references: tuple[str, ...]


def example(id: str, input: str, target: str) -> TextExample:
    return TextExample(id, input, target, (target,))


def require_examples(examples: list[TextExample], path: Path | str, split: str) -> list[TextExample]:
    if not examples:
        raise UserError(f"{path}: the {split!r} split has no examples")
    return examples


def require_fields(record: object, fields: Sequence[str], where: str, kind: type = str) -> dict:
    """The record as a dict holding ``kind`` values for ``fields``; names the missing ones otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in fields if record.get(f) is None]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(map(repr, missing))}; it has {sorted(record)}")
    wrong = [f for f in fields if not isinstance(record[f], kind)]
    if wrong:
        raise UserError(f"{where}: field(s) {', '.join(map(repr, wrong))} must be {kind.__name__}s")
    return record


# --- files to records -------------------------------------------------------------------------------
def not_utf8(path: Path, where: str) -> UserError:
    return UserError(f"{path}: not UTF-8 text ({where}); re-save it as UTF-8")


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); an empty file is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise not_utf8(path, f"byte {error.start}") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def check_not_empty(path: Path) -> None:
    """``read_text``'s checks without reading a whole CSV file into memory: decoded in chunks up to its
    first non-blank character (a bad byte later is found while parsing)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            try:
                if decoder.decode(chunk).strip():
                    return
            except UnicodeDecodeError as error:
                raise not_utf8(path, f"byte {offset + error.start}") from None
            offset += len(chunk)
    raise UserError(f"{path}: the file is empty")


def iter_json_records(path: Path) -> Iterator[tuple[str, object]]:
    """(location, record) from a JSON array file or a JSONL file; locations are ``file:line`` for JSONL."""
    text = read_text(path)
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


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file (a byte-order mark is not part of the first name)."""
    check_not_empty(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        try:
            return next(csv.reader(handle), [])
        except UnicodeDecodeError:
            raise not_utf8(path, "line 1") from None


def iter_csv_rows(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(``file:line``, row) from a CSV file with a header row that names ``fields``."""
    csv.field_size_limit(sys.maxsize)  # news articles exceed csv's 128 KiB default
    check_not_empty(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, strict=True)
        start = 1  # the line the record being parsed starts on
        try:
            header = reader.fieldnames or []
            missing = [f for f in fields if f not in header]
            if missing:
                raise UserError(
                    f"{path}:1: header lacks column(s) {', '.join(map(repr, missing))}; it has {header}"
                )
            start = reader.line_num + 1
            for row in reader:
                where = f"{path}:{start}"
                if None in row or any(row[f] is None for f in fields):
                    raise UserError(
                        f"{where}: expected {len(header)} columns ({', '.join(header)}), got another count"
                    )
                yield where, row
                start = reader.line_num + 1
        except csv.Error as error:
            raise UserError(
                f"{path}:{start}: not valid CSV ({error}); a quoted field that never closes usually means "
                "the file was cut off: download it again"
            ) from None
        except UnicodeDecodeError:
            raise not_utf8(path, f"at or after line {start}") from None  # decoding reads ahead


def table_columns(path: Path) -> list[str]:
    """The column names of a Parquet file, an Arrow file (``save_to_disk``) or a CSV file."""
    if path.suffix == ".csv":
        return csv_header(path)
    return list(_arrow_schema(path).names)


def _arrow_schema(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_schema(path)
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable {path.suffix[1:]} file ({error})") from None


def iter_table_rows(
    paths: Sequence[Path], columns: Sequence[str], optional: Sequence[str] = ("id",)
) -> Iterator[tuple[str, dict]]:
    """(``file: row k``, record) over Parquet / Arrow (``datasets``' ``save_to_disk``) / CSV files in
    order, reading ``columns`` and those of ``optional`` that exist; a file without one of ``columns``
    is an error naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in paths:
        if path.suffix == ".csv":
            yield from iter_csv_rows(path, columns)
            continue
        names = table_columns(path)
        missing = [c for c in columns if c not in names]
        if missing:
            raise UserError(f"{path}: no column(s) {', '.join(map(repr, missing))}; it has {names}")
        read = [*columns, *(c for c in optional if c in names and c not in columns)]
        try:
            if path.suffix == ".parquet":
                batches = pq.ParquetFile(path).iter_batches(batch_size=4096, columns=read)
            else:
                batches = iter(pa.ipc.open_stream(pa.memory_map(str(path))))
            row = 0
            for batch in batches:
                for record in batch.select(read).to_pylist():
                    yield f"{path}: row {row}", record
                    row += 1
        except (pa.ArrowInvalid, OSError) as error:
            raise UserError(f"{path}: not a readable {path.suffix[1:]} file ({error})") from None


def iter_records(paths: Sequence[Path], fields: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """Records holding ``fields`` from CSV, JSON/JSONL, Parquet or Arrow files."""
    for path in paths:
        if path.suffix in (".json", ".jsonl"):
            for where, record in iter_json_records(path):
                yield where, require_fields(record, fields, where)
        else:
            yield from iter_table_rows([path], fields)


# --- CNN/DailyMail ----------------------------------------------------------------------------------
CNNDM_TRAIN_SIZE = 10_000  # App. D.1: the first 10K training examples (Krishna et al. 2021)


def read_cnndm(paths: Sequence[Path], split: str) -> list[TextExample]:
    """Records with ``article`` and ``highlights`` (HF ``cnn_dailymail`` 3.0.0, CSV or JSONL exports):
    input ``"summarize: " + article``; the first 10K of the training split (App. D.1)."""
    limit = CNNDM_TRAIN_SIZE if split == "train" else None
    examples = []
    for k, (_, record) in enumerate(iter_records(paths, ("article", "highlights"))):
        if limit is not None and k >= limit:
            break
        examples.append(
            example(str(record.get("id") or k), "summarize: " + record["article"], record["highlights"])
        )
    return require_examples(examples, paths[0], split)


# --- the paper authors' finetuning_data/<task>/{train,valid,test}.txt --------------------------------
def read_tab_pairs(path: Path, split: str, limit: int | None = None) -> list[TextExample]:
    """One ``input<TAB>target`` per line, both already formatted; a line without exactly one tab is
    dropped, as the authors' seqio task did (``translation_processors``: split on tabs, keep length 2)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    examples, dropped = [], 0
    for number, line in enumerate(lines, start=1):
        parts = line.split("\t")
        if len(parts) != 2:
            dropped += 1
            continue
        examples.append(example(f"{path.name}:{number}", parts[0], parts[1]))
    if dropped:
        logger.warning(
            "%s: %d line(s) without exactly one tab dropped (as the authors' seqio task)", path, dropped
        )
    return require_examples(examples[:limit], path, split)


# --- MTOP and WebQSP (UnifiedSKG) -------------------------------------------------------------------
def skg_input(text_in: str, struct_in: str) -> str:
    """App. D.2 (UnifiedSKG's ``utils/dataset.py``): ``text_in ; structured knowledge: struct_in``."""
    return f"{text_in} ; structured knowledge: {struct_in}"


def read_unified_skg(paths: Sequence[Path], split: str) -> list[TextExample]:
    """UnifiedSKG seq2seq records {"text_in", "struct_in", "seq_out"} (JSON array or JSONL)."""
    examples = []
    for k, (_, record) in enumerate(iter_records(paths, ("text_in", "struct_in", "seq_out"))):
        examples.append(
            example(
                str(record.get("id", k)), skg_input(record["text_in"], record["struct_in"]), record["seq_out"]
            )
        )
    return require_examples(examples, paths[0], split)


# The intents of MTOP's English data in UnifiedSKG's order (``tasks/mtop.py``, ``INTENTS``).
# fmt: off
MTOP_INTENTS = (
    "IN:GET_MESSAGE", "IN:GET_WEATHER", "IN:GET_ALARM", "IN:SEND_MESSAGE", "IN:GET_INFO_RECIPES",
    "IN:SET_UNAVAILABLE", "IN:DELETE_REMINDER", "IN:GET_STORIES_NEWS", "IN:CREATE_ALARM",
    "IN:GET_REMINDER", "IN:CREATE_REMINDER", "IN:GET_RECIPES", "IN:QUESTION_NEWS", "IN:GET_EVENT",
    "IN:PLAY_MUSIC", "IN:GET_CALL_TIME", "IN:CREATE_CALL", "IN:END_CALL", "IN:CREATE_PLAYLIST_MUSIC",
    "IN:CREATE_TIMER", "IN:IGNORE_CALL", "IN:GET_LIFE_EVENT", "IN:GET_INFO_CONTACT", "IN:UPDATE_CALL",
    "IN:UPDATE_REMINDER_DATE_TIME", "IN:GET_CONTACT", "IN:GET_TIMER", "IN:GET_REMINDER_DATE_TIME",
    "IN:DELETE_ALARM", "IN:PAUSE_MUSIC", "IN:GET_AGE", "IN:GET_SUNRISE", "IN:GET_EMPLOYER",
    "IN:GET_EDUCATION_TIME", "IN:ANSWER_CALL", "IN:SET_RSVP_YES", "IN:SNOOZE_ALARM", "IN:GET_JOB",
    "IN:UPDATE_REMINDER_TODO", "IN:IS_TRUE_RECIPES", "IN:REMOVE_FROM_PLAYLIST_MUSIC",
    "IN:GET_AVAILABILITY", "IN:GET_CATEGORY_EVENT", "IN:PLAY_MEDIA", "IN:ADD_TIME_TIMER", "IN:GET_CALL",
    "IN:SET_AVAILABLE", "IN:ADD_TO_PLAYLIST_MUSIC", "IN:GET_EMPLOYMENT_TIME", "IN:SHARE_EVENT",
    "IN:PREFER", "IN:START_SHUFFLE_MUSIC", "IN:GET_CALL_CONTACT", "IN:GET_LOCATION", "IN:SILENCE_ALARM",
    "IN:SWITCH_CALL", "IN:GET_TRACK_INFO_MUSIC", "IN:SUBTRACT_TIME_TIMER", "IN:GET_SUNSET",
    "IN:DELETE_TIMER", "IN:UPDATE_TIMER", "IN:PREVIOUS_TRACK_MUSIC", "IN:SET_DEFAULT_PROVIDER_MUSIC",
    "IN:HOLD_CALL", "IN:GET_MUTUAL_FRIENDS", "IN:SKIP_TRACK_MUSIC", "IN:UPDATE_METHOD_CALL",
    "IN:SET_RSVP_INTERESTED", "IN:QUESTION_MUSIC", "IN:GET_UNDERGRAD", "IN:PAUSE_TIMER",
    "IN:UPDATE_ALARM", "IN:GET_REMINDER_LOCATION", "IN:GET_ATTENDEE_EVENT", "IN:LIKE_MUSIC",
    "IN:RESTART_TIMER", "IN:RESUME_TIMER", "IN:MERGE_CALL", "IN:GET_MESSAGE_CONTACT", "IN:REPLAY_MUSIC",
    "IN:LOOP_MUSIC", "IN:GET_REMINDER_AMOUNT", "IN:GET_DATE_TIME_EVENT", "IN:STOP_MUSIC",
    "IN:GET_DETAILS_NEWS", "IN:GET_EDUCATION_DEGREE", "IN:SET_DEFAULT_PROVIDER_CALLING", "IN:GET_MAJOR",
    "IN:UNLOOP_MUSIC", "IN:GET_CONTACT_METHOD", "IN:SET_RSVP_NO", "IN:UPDATE_REMINDER_LOCATION",
    "IN:RESUME_CALL", "IN:CANCEL_MESSAGE", "IN:RESUME_MUSIC", "IN:UPDATE_REMINDER",
    "IN:DELETE_PLAYLIST_MUSIC", "IN:REWIND_MUSIC", "IN:REPEAT_ALL_MUSIC", "IN:FAST_FORWARD_MUSIC",
    "IN:DISLIKE_MUSIC", "IN:GET_LIFE_EVENT_TIME", "IN:DISPREFER", "IN:REPEAT_ALL_OFF_MUSIC",
    "IN:HELP_REMINDER", "IN:GET_LYRICS_MUSIC", "IN:STOP_SHUFFLE_MUSIC", "IN:GET_AIRQUALITY",
    "IN:GET_LANGUAGE", "IN:FOLLOW_MUSIC", "IN:GET_GENDER", "IN:CANCEL_CALL", "IN:GET_GROUP",
)
# fmt: on


def mtop_structure(intents: Sequence[str] = MTOP_INTENTS) -> str:
    """UnifiedSKG's constant MTOP ``struct_in`` (``tasks/mtop.py``, ``agg``): the intents grouped by
    the part before their first ``_``, e.g. ``IN:GET: MESSAGE, WEATHER | IN:SEND: MESSAGE``.  Only the
    intents, no slots, as in UnifiedSKG and in the paper's App. D.2 example."""
    groups: dict[str, list[str]] = {}
    for intent in intents:
        prefix, _, rest = intent.partition("_")
        groups.setdefault(prefix, []).append(rest)
    return " | ".join(f"{prefix}: {', '.join(rest)}" for prefix, rest in groups.items())


MTOP_COLUMNS = ("id", "intent", "slots", "utterance", "domain", "locale", "decoupled form", "tokens JSON")


def read_mtop_tsv(path: Path, split: str) -> list[TextExample]:
    """MTOP's release (``mtop/en/{train,eval,test}.txt``): 8 tab-separated columns, no header.  As
    UnifiedSKG's ``tasks/mtop.py`` + ``seq2seq_construction/mtop.py`` (``use_apis = True``): ``text_in``
    = the tokens of column 8 joined by spaces, ``struct_in`` = ``mtop_structure()``, ``seq_out`` = the
    decoupled form (column 7)."""
    structure = mtop_structure()
    examples = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) != len(MTOP_COLUMNS):
            raise UserError(f"{where}: expected {len(MTOP_COLUMNS)} tab-separated columns "
                            f"({', '.join(MTOP_COLUMNS)}), got {len(fields)}")  # fmt: skip
        try:
            tokens = json.loads(fields[7])["tokens"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{where}: column 8 is not a JSON object with a 'tokens' list") from None
        examples.append(example(fields[0], skg_input(" ".join(tokens), structure), fields[6]))
    return require_examples(examples, path, split)


WEBQSP_FIELDS = ("ID", "question", "kg_tuples", "entities", "s_expression")


def webqsp_structure(kg_tuples: list, entities: list) -> str:
    """UnifiedSKG's ``seq2seq_construction/webqsp.py`` (``kgqa_get_input``): the entities as
    ``name: mid`` joined by spaces, ``" | "``, then the KG tuples as ``head rel tail`` joined by ``" | "``."""
    kg = " | ".join(" ".join(t) for t in kg_tuples).strip()
    named = " ".join(": ".join(e) for e in entities).strip()
    return named + " | " + kg


def read_webqsp_jsonl(path: Path, split: str) -> list[TextExample]:
    """UnifiedSKG's WebQSP (``webqsp/{train,dev,test}.jsonl``: ID, question, answers, kg_tuples, entities,
    s_expression, sparql), built as its ``seq2seq_construction/webqsp.py``: training records whose
    ``s_expression`` is ``"null"`` are dropped; validation and test keep them."""
    examples = []
    for where, record in iter_json_records(path):
        require_fields(record, ("ID", "question", "s_expression"), where)
        require_fields(record, ("kg_tuples", "entities"), where, kind=list)
        if split == "train" and record["s_expression"] == "null":
            continue
        structure = webqsp_structure(record["kg_tuples"], record["entities"])
        examples.append(
            example(record["ID"], skg_input(record["question"].strip(), structure), record["s_expression"])
        )
    return require_examples(examples, path, split)


# --- SQuAD v1.1 -------------------------------------------------------------------------------------
def squad_example(id: str, question: str, context: str, answers: Sequence[str], where: str) -> TextExample:
    """Input ``question: Q context: C`` (T5's ``squad_v010_allanswers``); target the first answer,
    references all answers (the official metric takes the max over them)."""
    if not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: missing field 'answers' (a non-empty list of answer texts)")
    return TextExample(id, f"question: {question} context: {context}", answers[0], tuple(answers))


def read_squad(paths: Sequence[Path], split: str) -> list[TextExample]:
    """The official SQuAD v1.1 JSON (``train-v1.1.json``, ``dev-v1.1.json``)."""
    path = paths[0]
    try:
        root = json.loads(read_text(path))
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
                answers = qa.get("answers") or []
                texts = [x.get("text") if isinstance(x, dict) else None for x in answers]
                examples.append(
                    squad_example(qa["id"], qa["question"], paragraph["context"], texts, qa_where)
                )
    return require_examples(examples, path, split)


def read_squad_table(paths: Sequence[Path], split: str) -> list[TextExample]:
    """HF ``squad`` (``plain_text``) Parquet or Arrow: id, title, context, question, answers {text,
    answer_start}."""
    examples = []
    for where, row in iter_table_rows(paths, ("id", "question", "context", "answers")):
        answers = row["answers"]["text"] if isinstance(row["answers"], dict) else None
        examples.append(squad_example(row["id"], row["question"], row["context"], answers or [], where))
    return require_examples(examples, paths[0], split)


# --- line-aligned pairs: CodeXGLUE Java -> C#, T5Chem USPTO-50K ------------------------------------------
def read_line_aligned(paths: Sequence[Path], split: str) -> list[TextExample]:
    """Two line-aligned files (``train.java-cs.txt.java`` / ``.cs``; ``train.source`` / ``.target``):
    line i of the first is the input whose target is line i of the second."""
    source, target = paths
    sources = read_text(source).splitlines()
    targets = read_text(target).splitlines()
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
PRODUCT_COLUMNS = ("product", "products")
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


def _reaction_pairs(path: Path, columns: list[str]) -> Iterator[tuple[str, str, str, str]]:
    """(where, id, product, reactants) of a USPTO table: a ``reactants>reagents>production`` column
    (GLN's ``raw_*.csv``), or ``reactants`` + ``product`` columns (HF copies)."""
    reaction = next((c for c in REACTION_COLUMNS if c in columns), None)
    product = next((c for c in PRODUCT_COLUMNS if c in columns), None)
    if reaction is None and not (product and "reactants" in columns):
        raise UserError(
            f"{path}: no reaction column; expected one of {list(REACTION_COLUMNS)}, or 'reactants' and "
            f"'product', got {columns}"
        )
    fields = (reaction,) if reaction else ("reactants", product)
    for where, row in iter_table_rows([path], fields):
        if reaction is None:
            yield where, row.get("id") or where, row[product], row["reactants"]
            continue
        parts = row[reaction].split(">")
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise UserError(f"{where}: reaction {row[reaction][:60]!r} is not 'reactants>reagents>product'")
        yield where, row.get("id") or where, parts[2], parts[0]


def read_uspto(paths: Sequence[Path], split: str) -> list[TextExample]:
    """USPTO-50K tables: input the product, target the reactants.  Atom-mapped SMILES are un-mapped and
    canonicalized with RDKit; unmapped SMILES are kept as given."""
    examples = []
    for path in paths:
        for _, id, product, reactants in _reaction_pairs(path, table_columns(path)):
            if _ATOM_MAP.search(product) or _ATOM_MAP.search(reactants):
                product, reactants = strip_atom_maps(product), strip_atom_maps(reactants)
            examples.append(example(str(id), product, reactants))
    return require_examples(examples, paths[0], split)
