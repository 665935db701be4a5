"""The token layout shared by every synthetic task (and by the tiny demo vocabularies).

T5's vocabulary is 32,000 SentencePiece ids plus 100 sentinels ``<extra_id_0>`` = 32099 down to
``<extra_id_99>`` = 32000, with pad 0 and eos 1.  The authors sampled task tokens from the content
ids 2..31999 and used sentinels as separators (``original_repo.md``).  We keep that layout and make
it relative to the content range, so that a small vocabulary (``--vocab 3:127``) works the same way:

    content ids  lo..hi            tokens that tasks sample
    sentinel(k) = hi + 100 - k      k = 0..99, i.e. hi+100 down to hi+1

With the default content range 2..31999, sentinel(k) is exactly T5's ``<extra_id_k>``.
The model vocabulary must hold ids up to ``hi + 100`` (T5's 32,128 does for the default range).

``SENTINEL_ROLES`` is the one documented table of what each sentinel means.  Span-corruption
tasks (Dyck, text) use sentinels 0, 1, 2, ... as T5 does, so ids are shared between roles of
different tasks, exactly as T5 shares its extra ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthpre.errors import UserError

PAD_ID = 0
EOS_ID = 1
NUM_SENTINELS = 100

DEFAULT_CONTENT_LO = 2
DEFAULT_CONTENT_HI = 31999

# k -> role.  k counts down from the top of the vocabulary (k = 0 is <extra_id_0>).
SENTINEL_ROLES: dict[str, int] = {
    "task_sep": 0,  # between the task prefix and the payload (authors: <extra_id_0>)
    "word_sep": 1,  # between words of longest_word (authors: <extra_id_1>)
    "arg_sep": 2,  # between the two sequences of a binary task (authors: <extra_id_2>)
    "empty": 3,  # the whole output when a set operation is empty (authors: <extra_id_3>)
    **{f"digit_{d}": 4 + d for d in range(10)},  # k = 4..13: digits 0..9 of length/count/longest_word
    "yes": 14,
    "no": 15,
    # LIME (App. E.1)
    "lime_sep": 16,  # <s> between the parts of a LIME example
    "lime_colon": 17,  # ':' in the case dictionary
    "lime_lbrace": 18,  # '{'
    "lime_rbrace": 19,  # '}'
    "lime_comma": 20,  # ','
    "lime_rule_symbols": 21,  # header marker <RuleSymbols>
    "lime_math_symbols": 22,  # header marker <MathSymbols>
}
# Task prefixes: one sentinel per registered task, k = PREFIX_BASE + position in TASK_PREFIX_ORDER.
PREFIX_BASE = 30
TASK_PREFIX_ORDER: tuple[str, ...] = (
    "set", "delete", "sort", "identity", "union", "set1_minus_set2", "replace", "duplicate",
    "intersect", "reverse", "set2_minus_set1", "deduplicate", "last_token", "first_token",
    "longest_word", "search", "length", "count",
    "lime_induct", "lime_deduct", "lime_abduct", "dyck", "nonsense_summary", "text_span_corruption",
)  # fmt: skip


@dataclass(frozen=True)
class TokenSpace:
    """Content ids ``lo..hi`` (inclusive) plus 100 sentinels above ``hi``."""

    lo: int = DEFAULT_CONTENT_LO
    hi: int = DEFAULT_CONTENT_HI

    def __post_init__(self) -> None:
        if self.lo < 2:
            raise UserError(f"vocabulary lower bound {self.lo} < 2: ids 0 and 1 are pad and eos")
        if self.hi < self.lo:
            raise UserError(f"empty vocabulary {self.lo}:{self.hi}: need LO <= HI in vocab (--vocab)")

    @classmethod
    def parse(cls, text: str) -> TokenSpace:
        """Parse ``LO:HI`` as given to ``--vocab``."""
        try:
            lo, hi = (int(part) for part in text.split(":"))
        except ValueError:
            raise UserError(f"vocab {text!r} (--vocab): expected LO:HI, two integers, e.g. 2:31999") from None
        return cls(lo, hi)

    @property
    def num_content(self) -> int:
        return self.hi - self.lo + 1

    @property
    def vocab_size(self) -> int:
        """Smallest model vocabulary that holds every id of this space (content + sentinels)."""
        return self.hi + NUM_SENTINELS + 1

    def sentinel(self, k: int) -> int:
        if not 0 <= k < NUM_SENTINELS:
            raise ValueError(f"sentinel index {k} outside 0..{NUM_SENTINELS - 1}")
        return self.hi + NUM_SENTINELS - k

    def special(self, role: str) -> int:
        return self.sentinel(SENTINEL_ROLES[role])

    @property
    def task_sep(self) -> int:
        return self.special("task_sep")

    @property
    def word_sep(self) -> int:
        return self.special("word_sep")

    @property
    def arg_sep(self) -> int:
        return self.special("arg_sep")

    @property
    def empty(self) -> int:
        return self.special("empty")

    @property
    def yes(self) -> int:
        return self.special("yes")

    @property
    def no(self) -> int:
        return self.special("no")

    @property
    def digit_ids(self) -> np.ndarray:
        """Ids of the digits 0..9 (``digit_ids[d]`` writes ``d``)."""
        return np.array([self.special(f"digit_{d}") for d in range(10)], dtype=np.int32)

    def prefix_ids(self, task: str) -> list[int]:
        """The task-prefix tokens (one id) that start every input of ``task``."""
        return [self.sentinel(PREFIX_BASE + TASK_PREFIX_ORDER.index(task))]

    def describe(self) -> dict:
        """The ``token_space`` block of a manifest."""
        return {
            "content_ids": [self.lo, self.hi],
            "pad": PAD_ID,
            "eos": EOS_ID,
            "task_sep": self.task_sep,
            "arg_sep": self.arg_sep,
            "word_sep": self.word_sep,
            "empty": self.empty,
            "vocab_size": self.vocab_size,
        }


assert PREFIX_BASE + len(TASK_PREFIX_ORDER) <= NUM_SENTINELS
assert max(SENTINEL_ROLES.values()) < PREFIX_BASE


def token_space(vocab: str | None) -> TokenSpace:
    """The synthetic token space of setting ``vocab`` (``LO:HI``; None: T5's 2:31999)."""
    return TokenSpace.parse(vocab) if vocab else TokenSpace()
