"""``text_lm``: natural-text language modelling, the data of Hu et al. (2025)'s "tokens saved" curves.

An example is a passage of natural text: input empty, target the passage, so a decoder-only model
reads ``EOS passage EOS`` and learns every token of the passage.  Passages are a document's paragraphs
(blank-line separated) merged up to ``PASSAGE_CHARS`` characters; a longer paragraph is cut at
whitespace.  Passages never cross documents.

Data: ``--data DIR`` of local UTF-8 text (``{train,validation,test}.txt``, or any ``*.txt`` files split
by a hash of their paths), or, without ``--data``, the docstrings of the running interpreter's standard
library (module, class and function docstrings; one document per module, split by a hash of the module
name).  Both are deterministic: same files or same interpreter, same passages, same splits.
"""

from __future__ import annotations

import ast
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from synthpre.downstream import offline, readers
from synthpre.downstream.layouts import TRAIN_VAL_TEST, Layout, extensions, named
from synthpre.downstream.readers import SPLITS, TextExample, example
from synthpre.errors import UserError

PASSAGE_CHARS = 1_000  # ~215 SentencePiece tokens of the docstrings: a passage fits max_target_len 256
HELD_OUT_SHARE = 0.08  # of the documents (files, modules) in each of the test and validation splits
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
STATEMENT_FIELDS = ("body", "orelse", "handlers", "finalbody", "cases")  # where nested statements are


def cut_long(paragraph: str, max_chars: int) -> list[str]:
    """``paragraph`` in pieces of at most ``max_chars`` characters, cut at the last whitespace that fits
    (mid-word only where a piece has none)."""
    pieces = []
    while len(paragraph) > max_chars:
        at = next((k for k in range(max_chars, 0, -1) if paragraph[k].isspace()), max_chars)
        pieces.append(paragraph[:at].rstrip())
        paragraph = paragraph[at:].lstrip()
    return [*pieces, paragraph]


def passages(text: str, max_chars: int = PASSAGE_CHARS) -> list[str]:
    """The passages of a document: its paragraphs (separated by blank lines, stripped, empty ones
    dropped; a longer one cut by :func:`cut_long`), merged in order with a blank line between them
    while the passage stays within ``max_chars`` characters.  No passage is empty."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraphs, current_lines = [], []
    for line in [*lines, ""]:
        if line.strip():
            current_lines.append(line)
        elif current_lines:
            paragraphs.append("\n".join(current_lines).strip())
            current_lines = []
    found, current = [], ""
    for piece in (piece for paragraph in paragraphs for piece in cut_long(paragraph, max_chars)):
        if current and len(current) + 2 + len(piece) > max_chars:
            found.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    return [*found, current] if current else found


def split_by_hash(keys: Sequence[str]) -> dict[str, str]:
    """Document key -> split: the keys ranked by ``crc32`` (ties by the key); the first 8% (at least
    one) are test, the next 8% (at least one) validation, the rest train."""
    ranked = sorted(keys, key=lambda key: (zlib.crc32(key.encode()), key))
    held = max(1, round(HELD_OUT_SHARE * len(ranked)))
    return {
        key: "test" if k < held else "validation" if k < 2 * held else "train" for k, key in enumerate(ranked)
    }


# --- --data DIR: local text files -------------------------------------------------------------------
def read_text_files(paths: Sequence[Path], split: str) -> list[TextExample]:
    """The passages of each file (UTF-8, a byte-order mark dropped), in order; an empty or non-UTF-8
    file is an error naming it."""
    examples = [
        example(f"{path.name}#{k}", "", passage)
        for path in paths
        for k, passage in enumerate(passages(readers.read_text(path)))
    ]
    return readers.require_examples(examples, paths[0], split)


def hashed_text_files(data: Path, split: str) -> list[Path]:
    """The ``*.txt`` files below ``data`` (subfolders too) that :func:`split_by_hash` puts in ``split``,
    by their paths relative to ``data``; [] when there are none."""
    files = {
        path.relative_to(data).as_posix(): path for path in sorted(data.rglob("*.txt")) if path.is_file()
    }
    if not files:
        return []
    if len(files) < len(SPLITS):
        raise UserError(
            f"data (--data) {data}: {len(files)} .txt file(s), but a folder of text files needs at least "
            f"{len(SPLITS)} (one per split; ~8% of the files each go to test and validation): add files, or "
            "name them train.txt, validation.txt and test.txt"
        )
    splits = split_by_hash(list(files))
    return [path for key, path in files.items() if splits[key] == split]


TEXT_LAYOUTS = (
    Layout("text-splits", "{train,validation|val|valid,test}.txt (UTF-8 text)",
           named(extensions(TRAIN_VAL_TEST, "txt")), read_text_files),
    Layout("text-folder", "*.txt files, subfolders too (UTF-8 text), split by a hash of each file's path: "
           "~8% test, ~8% validation, the rest train", hashed_text_files, read_text_files),
)  # fmt: skip


# --- no --data: the standard library's docstrings ---------------------------------------------------
def module_docstrings(tree: ast.Module) -> list[str]:
    """The module's, classes' and functions' docstrings (indentation cleaned), in source order; only
    statements are walked (``ast.walk`` visits every expression too, twice the time)."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, DOCUMENTED) and (docstring := ast.get_docstring(node)) and docstring.strip():
            found.append(docstring)
        for field in STATEMENT_FIELDS:
            for child in getattr(node, field, ()):
                visit(child)

    visit(tree)
    return found


def split_documents(documents: dict[str, str]) -> dict[str, list[TextExample]]:
    """The passages of each split: documents (key -> text) split by :func:`split_by_hash` of their keys,
    in key order; example ids ``key#k``."""
    splits = split_by_hash(list(documents))
    found: dict[str, list[TextExample]] = {split: [] for split in SPLITS}
    for key in sorted(documents):
        found[splits[key]].extend(
            example(f"{key}#{k}", "", passage) for k, passage in enumerate(passages(documents[key]))
        )
    return found


@lru_cache(maxsize=1)
def docstring_documents() -> dict[str, str]:
    """Module name -> its docstrings joined by blank lines, for every standard-library module that has one."""
    documents = {}
    for module, path in offline.stdlib_modules():
        tree = offline.parse_python(path)
        if tree is not None and (docstrings := module_docstrings(tree)):
            documents[module] = "\n\n".join(docstrings)
    return documents


@lru_cache(maxsize=1)
def docstring_passages() -> dict[str, list[TextExample]]:
    """All splits of the offline corpus: one document per standard-library module, split by a hash of
    the module name."""
    return split_documents(docstring_documents())


def read_docstrings(split: str) -> list[TextExample]:
    return docstring_passages()[split]
