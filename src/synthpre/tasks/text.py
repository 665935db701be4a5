"""``text_span_corruption``: T5 span corruption over a local plain-text corpus.

The natural-language pre-training baseline that the synthetic tasks are compared with (Table 6,
"Wiki 10K" row).  The corpus is read, split into chunks and tokenized deterministically:

* files in the order given; each file splits into documents at blank lines (lines of a document are
  joined with spaces);
* each document is tokenized (no EOS) and cut into chunks of ``sequence_length`` tokens (the last
  chunk of a document may be shorter; chunks under 2 tokens are dropped);
* example ``i`` is chunk ``i mod num_chunks``, corrupted with the noise of its block's generator, so
  a second pass over the corpus sees new noise.

The tokenizer is a local Hugging Face tokenizer folder (``tokenizer.json`` or ``spiece.model``) or a
SentencePiece ``.model`` file; its ids must lie in the content range, and the sentinels are the
space's ``<extra_id_k>`` (for T5's tokenizer and the default range, exactly T5's own).  The default
``sequence_length = 568`` gives T5's 512-token inputs and 114-token targets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.ragged import offsets_from_lengths, ragged_take
from synthpre.tasks.registry import BLOCK_SIZE, Examples, Task, register
from synthpre.tasks.span_corruption import (
    DEFAULT_DENSITY,
    DEFAULT_MEAN_SPAN,
    max_spans,
    sentinel_ids,
    sentinel_names,
    span_corruption,
)
from synthpre.tokens import NUM_SENTINELS, TokenSpace


@dataclass(frozen=True)
class TextParams:
    """``paths``: the text files, comma-separated (one string, as ``--param paths=a.txt,b.txt``)."""

    paths: str = ""
    tokenizer: str = ""
    sequence_length: int = 568
    noise_density: float = DEFAULT_DENSITY
    mean_span: float = DEFAULT_MEAN_SPAN

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.paths.split(",") if p.strip())

    def validate(self, space: TokenSpace) -> None:
        if not self.files:
            raise UserError(
                "text_span_corruption: no text files; give paths=FILE[,FILE...] and tokenizer=PATH"
            )
        missing = [p for p in self.files if not Path(p).is_file()]
        if missing:
            raise UserError(f"text_span_corruption: text file(s) not found: {', '.join(missing)}")
        if not self.tokenizer or not Path(self.tokenizer).exists():
            raise UserError(
                f"text_span_corruption: tokenizer {self.tokenizer!r} not found; give a local tokenizer "
                "folder or a SentencePiece .model file"
            )
        if self.sequence_length < 2 or not 0 < self.noise_density < 0.5 or self.mean_span < 1:
            raise UserError(
                "text_span_corruption: need sequence_length >= 2, 0 < noise_density < 0.5, mean_span >= 1"
            )
        spans = max_spans(self.sequence_length, self.noise_density, self.mean_span)
        if spans > NUM_SENTINELS:
            raise UserError(
                f"text_span_corruption: sequence_length={self.sequence_length} needs {spans} sentinels "
                f"(at most {NUM_SENTINELS}); lower it"
            )
        corpus = load_corpus(self)
        if len(corpus.offsets) < 2:
            raise UserError(f"text_span_corruption: no chunk of >= 2 tokens in {self.paths}")
        check_tokenizer_ids([corpus.values], space, "text_span_corruption")


def check_tokenizer_ids(encoded: list, space: TokenSpace, where: str) -> None:
    """Tokenizer ids must be content ids: above them sit the sentinels, below them pad and eos."""
    ids = np.concatenate([np.asarray(e, dtype=np.int64) for e in encoded])
    low, high = int(ids.min()), int(ids.max())
    if low < space.lo or high > space.hi:
        raise UserError(
            f"{where}: the tokenizer produces ids {low}..{high}, outside the content range "
            f"{space.lo}:{space.hi}; give vocab (--vocab) LO:HI covering them (e.g. 2:{max(high, space.lo)})"
        )


@functools.lru_cache(maxsize=4)
def tokenizer_function(path: str) -> Callable[[list[str]], list[list[int]]]:
    """Texts -> ids (no EOS) with a SentencePiece ``.model`` file or a local tokenizer folder."""
    if Path(path).is_file():
        import sentencepiece

        try:
            processor = sentencepiece.SentencePieceProcessor(model_file=path)
        except (OSError, RuntimeError) as error:
            raise UserError(f"tokenizer {path}: not a SentencePiece model ({error})") from None
        return lambda texts: processor.encode(texts)
    from synthpre.tokenizer import load_pretrained_tokenizer

    return load_pretrained_tokenizer(Path(path)).encode_many


def read_documents(paths: tuple[str, ...]) -> list[str]:
    """Documents of the files in order: blocks separated by blank lines, lines joined by spaces."""
    documents = []
    for path in paths:
        for block in re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8")):
            text = " ".join(line.strip() for line in block.splitlines() if line.strip())
            if text:
                documents.append(text)
    return documents


@dataclass(frozen=True)
class Corpus:
    """Chunks as one ragged array: chunk ``c`` is ``values[offsets[c]:offsets[c+1]]``."""

    values: np.ndarray
    offsets: np.ndarray

    @property
    def num_chunks(self) -> int:
        return len(self.offsets) - 1


@functools.lru_cache(maxsize=4)
def load_corpus(params: TextParams) -> Corpus:
    encoded = tokenizer_function(params.tokenizer)(read_documents(params.files))
    values = np.concatenate([np.asarray(ids, dtype=np.int32) for ids in encoded]) if encoded else np.zeros(0)
    doc_lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    size = params.sequence_length
    full, rest = doc_lengths // size, doc_lengths % size
    chunks_per_doc = full + (rest > 0)
    chunk_lengths = np.full(int(chunks_per_doc.sum()), size, dtype=np.int64)
    last_chunk = np.cumsum(chunks_per_doc)[rest > 0] - 1
    chunk_lengths[last_chunk] = rest[rest > 0]
    offsets = offsets_from_lengths(chunk_lengths)
    kept = np.flatnonzero(chunk_lengths >= 2)
    values, offsets = ragged_take(values.astype(np.int32), offsets, kept)
    return Corpus(values, offsets)


def generate_text_block(params: TextParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    """``n`` corrupted chunks starting at chunk 0 (the first block); ``CorpusTask`` picks the block's."""
    return corrupt_chunks(params, space, rng, np.arange(n))


def corrupt_chunks(
    params: TextParams, space: TokenSpace, rng: np.random.Generator, examples: np.ndarray
) -> Examples:
    corpus = load_corpus(params)
    values, offsets = ragged_take(corpus.values, corpus.offsets, examples % corpus.num_chunks)
    return span_corruption(values, offsets, rng, sentinel_ids(space), params.noise_density, params.mean_span)


@dataclass(frozen=True)
class CorpusTask(Task):
    """A task whose example ``i`` reads chunk ``i``: its blocks need their index, not only their rng."""

    def generate_one_block(self, params: Any, space: TokenSpace, seed: int, block: int) -> Examples:
        rng = np.random.default_rng([seed, self.uid, block])
        return corrupt_chunks(params, space, rng, block * BLOCK_SIZE + np.arange(BLOCK_SIZE))


def text_manifest(params: TextParams, space: TokenSpace) -> dict:
    corpus = load_corpus(params)
    return {
        "paths": list(params.files),
        "tokenizer": params.tokenizer,
        "num_chunks": corpus.num_chunks,
        "num_tokens": len(corpus.values),
        "sentinel_ids": sentinel_ids(
            space, max_spans(params.sequence_length, params.noise_density, params.mean_span)
        ).tolist(),
    }


register(
    CorpusTask(
        name="text_span_corruption",
        definition="T5 span corruption of local text files (natural-language baseline, Table 6)",
        generate_block=generate_text_block,
        params_cls=TextParams,
        uses_prefix=False,
        extra_manifest=text_manifest,
        token_names=lambda tokens, params, space: sentinel_names(space),
    )
)
