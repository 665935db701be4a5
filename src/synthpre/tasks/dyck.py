"""The Dyck artificial language (App. E.2), converted to seq2seq by T5 span corruption.

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
The authors gave Dyck no task prefix, and neither do we.
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


@dataclass(frozen=True)
class DyckParams:
    num_pairs: int = 16_000
    min_len: int = 2
    max_len: int = 568
    open_prob: float = 0.5
    max_depth: int = 64
    noise_density: float = DEFAULT_DENSITY
    mean_span: float = DEFAULT_MEAN_SPAN

    def validate(self, space: TokenSpace) -> None:
        if not 2 <= self.min_len <= self.max_len or self.min_len % 2 or self.max_len % 2:
            raise UserError(
                f"dyck: min_len={self.min_len}, max_len={self.max_len}: need even lengths with "
                "2 <= min_len <= max_len (a sentence of pairs has even length)"
            )
        if not 0 < self.open_prob <= 1 or self.max_depth < 1 or self.num_pairs < 1:
            raise UserError("dyck: need 0 < open_prob <= 1, max_depth >= 1 and num_pairs >= 1")
        if space.num_content < 2:
            raise UserError(f"dyck: the content range {space.lo}:{space.hi} cannot hold one head-tail pair")
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


def generate_dyck(params: DyckParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets, _ = dyck_sentences(params, space, rng, n)
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
    """The target's spans, put back in place of the input's sentinels, give a balanced sentence."""
    return is_balanced(reassemble(inputs, targets, sentinel_ids(space)), params, space)


BRACKETS = ("()", "[]", "{}", "<>")
LOWER = "abcdefghijklmnopqrstuvwxyz"


def dyck_token_names(tokens: list[int], params: DyckParams | None, space: TokenSpace) -> dict[int, str]:
    """App. E.2 notation: pairs as ``( )``, ``[ ]``, ``{ }``, ``< >``, then ``a A``, ``b B``, ... in order
    of first appearance; sentinels as ``<s0>, <s1>, ...``."""
    pairs = pair_count(params or DyckParams(), space)
    names = sentinel_names(space)
    order: dict[int, int] = {}
    for token in tokens:
        offset = token - space.lo
        if 0 <= offset < 2 * pairs:
            order.setdefault(offset % pairs, len(order))
    for pair, k in order.items():
        if k < len(BRACKETS):
            opening, closing = BRACKETS[k]
        else:
            j = k - len(BRACKETS)
            opening = LOWER[j % 26] + (str(j // 26) if j >= 26 else "")
            closing = opening.upper()
        names[space.lo + pair], names[space.lo + pairs + pair] = opening, closing
    return names


def dyck_manifest(params: DyckParams, space: TokenSpace) -> dict:
    pairs = pair_count(params, space)
    used = max_spans(params.max_len, params.noise_density, params.mean_span)
    return {
        "num_pairs": pairs,
        "open_ids": [space.lo, space.lo + pairs - 1],
        "close_ids": [space.lo + pairs, space.lo + 2 * pairs - 1],
        "sentinel_ids": sentinel_ids(space, used).tolist(),
    }


register(
    Task(
        name="dyck",
        definition="T5 span corruption of a well-nested head-tail sentence (Dyck, E.2)",
        generate_block=generate_dyck,
        params_cls=DyckParams,
        check=check_dyck,
        uses_prefix=False,
        extra_manifest=dyck_manifest,
        token_names=dyck_token_names,
    )
)
