"""T5's span-corruption objective, vectorized over a batch of ragged token sequences.

App. E.2 converts Dyck sentences to seq2seq "with the T5 pre-training objective"; the same function
serves ``text_span_corruption`` (the natural-language baseline).  It follows T5's
``random_spans_noise_mask``: a sequence of length ``L`` gets ``N = round(L * density)`` noise tokens
(clipped to ``1..L-1``) split into ``S = round(N / mean_span)`` noise spans (at least 1), and
``L - N`` kept tokens split into ``S`` kept spans; both splits are uniformly random compositions into
positive parts.  Spans alternate kept, noise, kept, noise, ..., so a sequence always starts with a
kept span and ends with a noise span.  Noise span ``k`` becomes sentinel ``k`` (``<extra_id_k>``) in
the input; the target lists each sentinel followed by its span:

    tokens  a b c d e f g h      input   a <s0> d e <s1>
                                 target  <s0> b c <s1> f g h
"""

from __future__ import annotations

import numpy as np

from synthpre.tasks.ragged import offsets_from_lengths
from synthpre.tasks.registry import Examples
from synthpre.tokens import NUM_SENTINELS, TokenSpace

DEFAULT_DENSITY = 0.15
DEFAULT_MEAN_SPAN = 3.0


def noise_counts(lengths: np.ndarray, density: float, mean_span: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise tokens and noise spans per sequence, as T5 computes them (lengths must be >= 2)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    noise = np.clip(np.round(lengths * density).astype(np.int64), 1, lengths - 1)
    spans = np.clip(np.round(noise / mean_span).astype(np.int64), 1, None)
    return noise, np.minimum(spans, np.minimum(noise, lengths - noise))


def max_spans(max_length: int, density: float, mean_span: float) -> int:
    """The most noise spans (hence sentinels) a sequence of ``max_length`` tokens can get."""
    return int(noise_counts(np.array([max(max_length, 2)]), density, mean_span)[1][0])


def sentinel_ids(space: TokenSpace, count: int = NUM_SENTINELS) -> np.ndarray:
    """``<extra_id_0>, <extra_id_1>, ...`` of ``space`` (32099 downwards for the default space)."""
    return np.array([space.sentinel(k) for k in range(count)], dtype=np.int32)


def sentinel_names(space: TokenSpace, count: int = NUM_SENTINELS) -> dict[int, str]:
    """``<s0>, <s1>, ...``: the sentinels as App. E.2 writes them (for ``show --letters``)."""
    return {space.sentinel(k): f"<s{k}>" for k in range(count)}


def random_compositions(totals: np.ndarray, parts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split each ``totals[r]`` into ``parts[r]`` positive integers, uniformly over compositions.

    Returns the part sizes of all rows concatenated (row 0's parts first).  A composition is a choice
    of ``parts - 1`` cut points among the ``total - 1`` gaps; the cuts are the gaps with the smallest
    random keys, found for all rows at once by one sort of (row + key).
    """
    totals, parts = np.asarray(totals, np.int64), np.asarray(parts, np.int64)
    gaps = totals - 1
    gap_row = np.repeat(np.arange(len(totals)), gaps)
    order = np.argsort(gap_row + rng.random(len(gap_row)), kind="stable")
    rank = np.empty_like(order)
    gap_offsets = offsets_from_lengths(gaps)
    rank[order] = np.arange(len(order)) - gap_offsets[gap_row[order]]
    is_cut = rank < (parts - 1)[gap_row]
    # item j of a row starts a new part if j == 0 or gap j-1 (between items j-1 and j) is a cut
    starts = np.ones(int(totals.sum()), dtype=bool)
    item_offsets = offsets_from_lengths(totals)
    gap_item = np.arange(len(gap_row)) - gap_offsets[gap_row] + 1 + item_offsets[gap_row]
    starts[gap_item] = is_cut
    part_of_item = np.cumsum(starts) - 1
    return np.bincount(part_of_item, minlength=int(parts.sum()))


def span_corruption(
    values: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    sentinels: np.ndarray,
    density: float = DEFAULT_DENSITY,
    mean_span: float = DEFAULT_MEAN_SPAN,
) -> Examples:
    """Corrupt every sequence ``values[offsets[r]:offsets[r+1]]`` (each of length >= 2) as T5 does.

    ``sentinels[k]`` replaces noise span ``k``; it must hold at least ``max_spans(...)`` ids.
    """
    lengths = np.diff(offsets).astype(np.int64)
    if len(lengths) and lengths.min() < 2:
        raise ValueError("span corruption needs sequences of at least 2 tokens")
    noise, spans = noise_counts(lengths, density, mean_span)
    if len(spans) and spans.max() > len(sentinels):
        raise ValueError(f"{spans.max()} noise spans but only {len(sentinels)} sentinels")
    noise_parts = random_compositions(noise, spans, rng)
    kept_parts = random_compositions(lengths - noise, spans, rng)
    span_lengths = np.empty(2 * len(noise_parts), dtype=np.int64)
    span_lengths[0::2], span_lengths[1::2] = kept_parts, noise_parts
    span_of_token = np.repeat(np.arange(len(span_lengths)), span_lengths)
    is_noise = (span_of_token % 2).astype(bool)
    span_starts = offsets_from_lengths(span_lengths)[:-1]
    is_span_start = np.zeros(len(values), dtype=bool)
    is_span_start[span_starts] = True
    # k = index of the noise span within its sequence
    row_first_span = offsets_from_lengths(spans)[:-1]
    row_of_token = np.repeat(np.arange(len(lengths)), lengths)
    noise_index = span_of_token // 2 - row_first_span[row_of_token]
    sentinel_of_token = np.asarray(sentinels, dtype=np.int32)[noise_index]

    keep = ~is_noise | is_span_start
    input_values = np.where(is_noise, sentinel_of_token, values)[keep].astype(np.int32)
    input_offsets = offsets_from_lengths(lengths - noise + spans)

    noise_values, noise_first = values[is_noise], is_span_start[is_noise]
    position = np.arange(len(noise_values)) + np.cumsum(noise_first)
    target_values = np.empty(len(noise_values) + int(noise_first.sum()), dtype=np.int32)
    target_values[position] = noise_values
    target_values[position[noise_first] - 1] = sentinel_of_token[is_noise][noise_first]
    target_offsets = offsets_from_lengths(noise + spans)
    return Examples(input_values, input_offsets, target_values, target_offsets)


def reassemble(inputs: np.ndarray, targets: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """Undo ``span_corruption`` for one example: put each target span back in place of its sentinel."""
    sentinel_set = {int(s): k for k, s in enumerate(sentinels)}
    spans: dict[int, list[int]] = {}
    current: list[int] = []
    for token in targets.tolist():
        if token in sentinel_set:
            current = spans.setdefault(sentinel_set[token], [])
        else:
            current.append(token)
    out: list[int] = []
    for token in inputs.tolist():
        out.extend(spans[sentinel_set[token]] if token in sentinel_set else [token])
    return np.asarray(out, dtype=np.int32)
