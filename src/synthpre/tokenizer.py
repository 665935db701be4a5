"""Text <-> ids, below both tasks (text span corruption) and downstream: a local Hugging Face /
SentencePiece tokenizer, one trained offline, or a character-level tokenizer for tiny CPU models.

Every tokenizer keeps T5's special ids (pad 0, eos 1, unk 2; App. B: "the default T5 tokenization"),
so ``synthpre.data.stream.collate`` can append EOS = 1 to its ids.  The character tokenizer maps the
characters of a task's training text onto content ids 3, 4, ... in sorted order: a tiny model pre-trained
on synthetic ids ``3..127`` (``--vocab 3:127``) then shares its token embeddings with the characters.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from synthpre.errors import UserError
from synthpre.tokens import EOS_ID, PAD_ID

UNK_ID = 2
CHAR_TOKENIZER_FILE = "char_tokenizer.json"
T5_EXTRA_IDS = 100


class TextTokenizer(Protocol):
    """What fine-tuning and evaluation need from a tokenizer."""

    @property
    def vocab_size(self) -> int:
        """Smallest model vocabulary that holds every id this tokenizer produces."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without EOS."""
        ...

    def encode_many(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; pad, eos and ids outside the vocabulary are dropped."""
        ...

    def save(self, folder: Path) -> None: ...


class CharTokenizer:
    """One id per character: ``alphabet[k]`` -> ``3 + k``; unknown characters -> unk (2)."""

    FIRST_ID = 3

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet characters must be distinct")
        self.alphabet = alphabet
        self._ids = {ch: self.FIRST_ID + k for k, ch in enumerate(alphabet)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters of ``texts``: the same texts give the same ids on any machine."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls("".join(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return self.FIRST_ID + len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(ch, UNK_ID) for ch in text]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        top = self.FIRST_ID + len(self.alphabet)
        return "".join(self.alphabet[i - self.FIRST_ID] for i in ids if self.FIRST_ID <= i < top)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"kind": "chars", "first_id": self.FIRST_ID, "pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID,
                   "alphabet": list(self.alphabet)}  # fmt: skip
        (folder / CHAR_TOKENIZER_FILE).write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> CharTokenizer:
        payload = json.loads((folder / CHAR_TOKENIZER_FILE).read_text())
        return cls("".join(payload["alphabet"]))


class PretrainedTokenizer:
    """A Hugging Face tokenizer read from a local folder (``tokenizer.json`` or ``spiece.model``);
    ``spiece_model`` (the SentencePiece model's bytes, when we trained it) is saved beside it."""

    def __init__(self, tokenizer: object, spiece_model: bytes | None = None) -> None:
        self.tokenizer = tokenizer
        self.spiece_model = spiece_model

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)  # type: ignore[arg-type]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]  # type: ignore[operator]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)  # type: ignore[attr-defined]

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(str(folder))  # type: ignore[attr-defined]
        if self.spiece_model is not None:
            (folder / "spiece.model").write_bytes(self.spiece_model)


def load_pretrained_tokenizer(folder: Path) -> PretrainedTokenizer:
    """A local tokenizer folder, never a hub name; T5's pad 0 / eos 1 are required."""
    from transformers import AutoTokenizer, T5Tokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"tokenizer {folder} (--tokenizer): not a folder (give a tokenizer folder or 'chars')"
        )
    try:
        if (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        elif (folder / "spiece.model").exists():
            tokenizer = T5Tokenizer.from_pretrained(
                str(folder), extra_ids=T5_EXTRA_IDS, local_files_only=True
            )
        else:
            raise UserError(
                f"tokenizer {folder} (--tokenizer): no tokenizer.json, tokenizer_config.json or spiece.model"
            )
    except UserError:
        raise
    except Exception as error:  # transformers raises many kinds for a broken folder
        raise UserError(
            f"tokenizer {folder} (--tokenizer): does not load ({type(error).__name__}: {error})"
        ) from None
    if tokenizer.pad_token_id != PAD_ID or tokenizer.eos_token_id != EOS_ID:
        raise UserError(
            f"tokenizer {folder} (--tokenizer): pad id {tokenizer.pad_token_id}, "
            f"eos id {tokenizer.eos_token_id}; "
            f"T5 models need pad {PAD_ID} and eos {EOS_ID} (a T5 SentencePiece tokenizer has them)"
        )
    return PretrainedTokenizer(tokenizer)


def load_run_tokenizer(folder: Path) -> TextTokenizer:
    """The tokenizer a run saved into ``RUN/tokenizer``."""
    if (folder / CHAR_TOKENIZER_FILE).exists():
        return CharTokenizer.load(folder)
    return load_pretrained_tokenizer(folder)


def train_sentencepiece(texts: Iterable[str], folder: Path, vocab_size: int = 32_000) -> PretrainedTokenizer:
    """Train a SentencePiece unigram model offline with T5's layout: ``vocab_size`` pieces (pad 0, eos 1,
    unk 2, no bos) + 100 sentinels ``<extra_id_0>`` = top id.  Saves ``spiece.model`` and the Hugging Face
    files into ``folder``.  A small corpus yields fewer pieces than asked (soft limit) instead of failing."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        lines = 0
        with corpus.open("w", encoding="utf-8") as out:
            for text in texts:
                for line in text.splitlines():
                    if line.strip():
                        out.write(line + "\n")
                        lines += 1
        if lines == 0:
            raise UserError("tokenizer training: the task's training split has no text")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "spiece"), model_type="unigram",
            vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
            pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, num_threads=1, minloglevel=2,
        )  # fmt: skip
        spiece_model = (Path(tmp) / "spiece.model").read_bytes()
    (folder / "spiece.model").write_bytes(spiece_model)
    tokenizer = PretrainedTokenizer(
        T5Tokenizer.from_pretrained(str(folder), extra_ids=T5_EXTRA_IDS, local_files_only=True), spiece_model
    )
    tokenizer.save(folder)
    return tokenizer
