"""The Dyck artificial language (App. E.2), converted to seq2seq by T5 span corruption, and k-Shuffle Dyck.

Tokens come in head-tail pairs: pair ``i`` opens with ``open_ids[i] = lo + i`` and closes with
``close_ids[i] = lo + P + i`` (``P`` = ``num_pairs``, default 16,000 or as many as the content range
holds: 15,999 for ids 2..31999).  A sentence is a well-nested sequence over these pairs, drawn by a
stack process:

* its length ``L`` is uniform over the even numbers in ``min_len..max_len``;
* at each position, with depth ``d`` (open pairs) and ``r`` positions left: if ``d == 0`` a pair
  opens; if ``d == r`` or ``d == max_depth`` the innermost pair closes; otherwise a pair opens with
  probability ``open_prob`` (a new head, uniform over the ``P`` pairs) and closes otherwise.

``open_prob = 0.5`` is a fair random walk (depth grows like ``sqrt(L)``); smaller values give flatter
sentences.  The sentence is then span-corrupted (noise density 0.15, mean span 3, sentinels
``<extra_id_0>, <extra_id_1>, ...``).  The default ``max_len = 568`` is T5's raw length for 512-token
inputs: it reproduces App. E.2's ranges exactly (inputs 3..512 and targets 3..114 tokens with EOS).
The authors gave Dyck no task prefix, and neither do we.  With ``form="lm"`` the sentence is not
corrupted: the input is empty and the target is the sentence itself, a plain language-model stream
for decoder-only pre-training.

``shuffle_dyck`` is k-Shuffle Dyck, after Hu, Petty, Shi, Merrill, Linzen, "Between Circuits and
Chomsky: Pre-pretraining on Formal Languages Imparts Linguistic Biases" (ACL 2025): ``k`` bracket
types (``num_types``, default 64), type ``i`` opens with ``lo + i`` and closes with ``lo + k + i``.
A word is a shuffle (interleaving) of ``k`` Dyck words, one per type: each type on its own is well
nested, but ``( [ ) ]`` is a word.  The process keeps one open count per type; at each position a
type opens when the total depth is 0, a type closes when the depth equals ``max_depth`` (default 16)
or the positions left, and otherwise a type opens with probability ``open_prob`` (uniform over the
``k`` types) or closes (uniform over the types with an open bracket, not the innermost one).  The
example is a language-model stream: an empty input, the word as the target.  Unlike Hu et al.'s
generator, which cuts words at the maximum length (so its words may end with open brackets), every
word here is complete and balanced, of even length ``L`` uniform over ``min_len..max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.registry import Examples, Task, register
from synthpre.tasks.span_corruption import (
    DEFAULT_DENSITY,
    DEFAULT_MEAN_SPAN,
    max_spans,
    reassemble,
    sentinel_ids,
    sentinel_names,
    span_corruption,
)
from synthpre.tokens import NUM_SENTINELS, TokenSpace

# span_corruption: T5 span corruption of the sentence (App. E.2); lm: an empty input, the sentence as target
DYCK_FORMS = ("span_corruption", "lm")


@dataclass(frozen=True)
class DyckParams:
    num_pairs: int = 16_000
    min_len: int = 2
    max_len: int = 568
    open_prob: float = 0.5
    max_depth: int = 64
    noise_density: float = DEFAULT_DENSITY
    mean_span: float = DEFAULT_MEAN_SPAN
    form: str = "span_corruption"

    def validate(self, space: TokenSpace) -> None:
        if self.form not in DYCK_FORMS:
            raise UserError(f"dyck: form={self.form!r}: choose one of {', '.join(DYCK_FORMS)}")
        if not 2 <= self.min_len <= self.max_len or self.min_len % 2 or self.max_len % 2:
            raise UserError(
                f"dyck: min_len={self.min_len}, max_len={self.max_len}: need even lengths with "
                "2 <= min_len <= max_len (a sentence of pairs has even length)"
            )
        if not 0 < self.open_prob <= 1 or self.max_depth < 1 or self.num_pairs < 1:
            raise UserError("dyck: need 0 < open_prob <= 1, max_depth >= 1 and num_pairs >= 1")
        if space.num_content < 2:
            raise UserError(f"dyck: the content range {space.lo}:{space.hi} cannot hold one head-tail pair")
        if self.form == "lm":  # no span corruption: the noise settings are unused
            return
        if not 0 < self.noise_density < 0.5 or self.mean_span < 1:
            raise UserError("dyck: need 0 < noise_density < 0.5 and mean_span >= 1")
        spans = max_spans(self.max_len, self.noise_density, self.mean_span)
        if spans > NUM_SENTINELS:
            raise UserError(
                f"dyck: max_len={self.max_len} needs {spans} sentinels, more than {NUM_SENTINELS}: "
                "lower max_len or noise_density, or raise mean_span"
            )


def pair_count(params: DyckParams, space: TokenSpace) -> int:
    """``num_pairs``, or as many pairs as the content range holds (heads and tails disjoint)."""
    return min(params.num_pairs, space.num_content // 2)


def dyck_sentences(
    params: DyckParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` balanced sentences as ragged (values, offsets), plus each sentence's maximum depth.

    The stack process runs for all ``n`` sentences at once, one position per step.
    """
    pairs = pair_count(params, space)
    open_base, close_base = space.lo, space.lo + pairs
    lengths = 2 * rng.integers(params.min_len // 2, params.max_len // 2 + 1, n)
    width = int(lengths.max())
    heads = rng.integers(0, pairs, (width, n)).astype(np.int32)
    coins = rng.random((width, n)) < params.open_prob
    rows = np.arange(n)
    # column max_depth of the stack is scratch: closing steps write their (unused) head there
    stack = np.zeros((n, params.max_depth + 1), dtype=np.int32)
    depth = np.zeros(n, dtype=np.int64)
    max_depth = np.zeros(n, dtype=np.int64)
    tokens = np.zeros((width, n), dtype=np.int32)
    for t in range(width):
        remaining = lengths - t
        must_close = (depth >= remaining) | (depth >= params.max_depth)
        opens = (depth == 0) | (coins[t] & ~must_close)
        top = stack[rows, np.maximum(depth - 1, 0)]
        tokens[t] = np.where(opens, open_base + heads[t], close_base + top)
        stack[rows, np.where(opens, depth, params.max_depth)] = heads[t]
        depth += np.where(remaining > 0, np.where(opens, 1, -1), 0)
        np.maximum(max_depth, depth, out=max_depth)
    inside = np.arange(width)[:, None] < lengths[None, :]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return tokens.T[inside.T], offsets, max_depth


def language_model_examples(values: np.ndarray, offsets: np.ndarray) -> Examples:
    """Examples with empty inputs and the given sequences as targets (a plain language-model stream)."""
    n = len(offsets) - 1
    return Examples(np.zeros(0, np.int32), np.zeros(n + 1, np.int64), values, offsets)


def generate_dyck(params: DyckParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets, _ = dyck_sentences(params, space, rng, n)
    if params.form == "lm":
        return language_model_examples(values, offsets)
    return span_corruption(values, offsets, rng, sentinel_ids(space), params.noise_density, params.mean_span)


def is_balanced(tokens: np.ndarray, params: DyckParams, space: TokenSpace) -> bool:
    """Every tail closes the innermost open head of its own pair, and nothing stays open."""
    pairs = pair_count(params, space)
    stack: list[int] = []
    for token in tokens.tolist():
        pair = token - space.lo
        if 0 <= pair < pairs:
            stack.append(pair)
        elif pairs <= pair < 2 * pairs and stack and stack[-1] == pair - pairs:
            stack.pop()
        else:
            return False
    return not stack


def check_dyck(inputs: np.ndarray, targets: np.ndarray, params: DyckParams, space: TokenSpace) -> bool:
    """The target's spans, put back in place of the input's sentinels, give a balanced sentence
    (``form="lm"``: the input is empty and the target is a balanced sentence)."""
    if params.form == "lm":
        return len(inputs) == 0 and is_balanced(targets, params, space)
    return is_balanced(reassemble(inputs, targets, sentinel_ids(space)), params, space)


BRACKETS = ("()", "[]", "{}", "<>")
LOWER = "abcdefghijklmnopqrstuvwxyz"


def bracket_names(tokens: list[int], lo: int, pairs: int) -> dict[int, str]:
    """App. E.2 notation for ``pairs`` bracket pairs opening at ``lo`` and closing at ``lo + pairs``:
    ``( )``, ``[ ]``, ``{ }``, ``< >``, then ``a A``, ``b B``, ... in order of first appearance."""
    order: dict[int, int] = {}
    for token in tokens:
        offset = token - lo
        if 0 <= offset < 2 * pairs:
            order.setdefault(offset % pairs, len(order))
    names: dict[int, str] = {}
    for pair, k in order.items():
        if k < len(BRACKETS):
            opening, closing = BRACKETS[k]
        else:
            j = k - len(BRACKETS)
            opening = LOWER[j % 26] + (str(j // 26) if j >= 26 else "")
            closing = opening.upper()
        names[lo + pair], names[lo + pairs + pair] = opening, closing
    return names


def dyck_token_names(tokens: list[int], params: DyckParams | None, space: TokenSpace) -> dict[int, str]:
    """Pairs as :func:`bracket_names` writes them, sentinels as ``<s0>, <s1>, ...`` (App. E.2)."""
    names = sentinel_names(space)
    names.update(bracket_names(tokens, space.lo, pair_count(params or DyckParams(), space)))
    return names


def dyck_manifest(params: DyckParams, space: TokenSpace) -> dict:
    pairs = pair_count(params, space)
    used = 0 if params.form == "lm" else max_spans(params.max_len, params.noise_density, params.mean_span)
    return {
        "num_pairs": pairs,
        "open_ids": [space.lo, space.lo + pairs - 1],
        "close_ids": [space.lo + pairs, space.lo + 2 * pairs - 1],
        "sentinel_ids": sentinel_ids(space, used).tolist(),
    }


register(
    Task(
        name="dyck",
        definition=(
            "T5 span corruption of a well-nested head-tail sentence (Dyck, E.2); "
            "form=lm: the sentence as a language-model target"
        ),
        generate_block=generate_dyck,
        params_cls=DyckParams,
        check=check_dyck,
        uses_prefix=False,
        extra_manifest=dyck_manifest,
        token_names=dyck_token_names,
    )
)


@dataclass(frozen=True)
class ShuffleDyckParams:
    num_types: int = 64
    min_len: int = 2
    max_len: int = 512
    open_prob: float = 0.5
    max_depth: int = 16

    def validate(self, space: TokenSpace) -> None:
        if not 2 <= self.min_len <= self.max_len or self.min_len % 2 or self.max_len % 2:
            raise UserError(
                f"shuffle_dyck: min_len={self.min_len}, max_len={self.max_len}: need even lengths with "
                "2 <= min_len <= max_len (a balanced word has even length)"
            )
        if not 0 < self.open_prob <= 1:
            raise UserError(f"shuffle_dyck: open_prob={self.open_prob}: need 0 < open_prob <= 1")
        if self.max_depth < 1:
            raise UserError(f"shuffle_dyck: max_depth={self.max_depth}: need max_depth >= 1")
        if self.num_types < 1:
            raise UserError(f"shuffle_dyck: num_types={self.num_types}: need num_types >= 1")
        if space.num_content < 2 * self.num_types:
            raise UserError(
                f"shuffle_dyck: num_types={self.num_types} needs {2 * self.num_types} content ids (an "
                f"opening and a closing id per type), but --vocab {space.lo}:{space.hi} holds "
                f"{space.num_content}: widen --vocab (e.g. {space.lo}:{space.lo + 2 * self.num_types - 1} "
                "or more) or lower num_types"
            )


def shuffle_dyck_words(
    params: ShuffleDyckParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` balanced k-Shuffle Dyck words as ragged (values, offsets).

    The process runs for all ``n`` words at once, one position per step, with one open count per
    type.  A closing step takes the ``j``-th type with an open bracket, ``j`` uniform below their number.
    """
    k = params.num_types
    lengths = 2 * rng.integers(params.min_len // 2, params.max_len // 2 + 1, n)
    width = int(lengths.max())
    opened_types = rng.integers(0, k, (width, n))
    coins = rng.random((width, n)) < params.open_prob
    close_draws = rng.random((width, n))
    rows = np.arange(n)
    open_counts = np.zeros((n, k), dtype=np.int32)
    depth = np.zeros(n, dtype=np.int64)
    tokens = np.zeros((width, n), dtype=np.int32)
    for t in range(width):
        remaining = lengths - t
        must_close = (depth >= remaining) | (depth >= params.max_depth)
        opens = (depth == 0) | (coins[t] & ~must_close)
        closing = np.flatnonzero(~opens & (remaining > 0))
        open_so_far = np.cumsum(open_counts[closing] > 0, axis=1)  # open types among 0..i, per row
        j = (close_draws[t, closing] * open_so_far[:, -1]).astype(np.int64)
        types = opened_types[t].copy()
        types[closing] = np.argmax(open_so_far > j[:, None], axis=1)
        tokens[t] = space.lo + types + np.where(opens, 0, k)
        step = np.where(remaining > 0, np.where(opens, 1, -1), 0)
        open_counts[rows, types] += step
        depth += step
    inside = np.arange(width)[:, None] < lengths[None, :]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return tokens.T[inside.T], offsets


def generate_shuffle_dyck(
    params: ShuffleDyckParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    return language_model_examples(*shuffle_dyck_words(params, space, rng, n))


def is_shuffle_dyck(tokens: np.ndarray, params: ShuffleDyckParams, space: TokenSpace) -> bool:
    """Every token is a bracket id, no type closes more often than it opened, and every type ends closed."""
    k = params.num_types
    open_counts = [0] * k
    for token in tokens.tolist():
        offset = token - space.lo
        if 0 <= offset < k:
            open_counts[offset] += 1
        elif k <= offset < 2 * k and open_counts[offset - k] > 0:
            open_counts[offset - k] -= 1
        else:
            return False
    return not any(open_counts)


def check_shuffle_dyck(
    inputs: np.ndarray, targets: np.ndarray, params: ShuffleDyckParams, space: TokenSpace
) -> bool:
    """The input is empty and the target is a balanced k-Shuffle Dyck word."""
    return len(inputs) == 0 and is_shuffle_dyck(targets, params, space)


def shuffle_dyck_token_names(
    tokens: list[int], params: ShuffleDyckParams | None, space: TokenSpace
) -> dict[int, str]:
    return bracket_names(tokens, space.lo, (params or ShuffleDyckParams()).num_types)


def shuffle_dyck_manifest(params: ShuffleDyckParams, space: TokenSpace) -> dict:
    k = params.num_types
    return {
        "num_types": k,
        "open_ids": [space.lo, space.lo + k - 1],
        "close_ids": [space.lo + k, space.lo + 2 * k - 1],
    }


register(
    Task(
        name="shuffle_dyck",
        definition="a balanced k-Shuffle Dyck word as a language-model target (Hu et al. 2025)",
        generate_block=generate_shuffle_dyck,
        params_cls=ShuffleDyckParams,
        check=check_shuffle_dyck,
        uses_prefix=False,
        extra_manifest=shuffle_dyck_manifest,
        token_names=shuffle_dyck_token_names,
    )
)
