"""LIME (Wu et al. 2021): induction, deduction and abduction over random rewrite rules (App. E.1).

Per example, fresh distinct ids are drawn from the content range: ``n`` rule symbols (n uniform in
3..5) and 44 math symbols (20 that the rule may use, 24 more that only substitutions use), as in
the LIME generator.  Then

* rule string: every rule symbol once, ``n`` more draws of rule symbols, and 5..19 draws of the
  20 rule-math symbols, shuffled (so each rule symbol appears, ``2n`` rule-symbol slots in all);
* case dictionary: each rule symbol maps to a string of 2..8 draws of the 44 math symbols;
* result string: the rule with every rule symbol replaced by its string.

The layout is App. E.1's, with ``<s>``, ``:``, ``{``, ``}``, ``,`` and the two header markers taken
from ``SENTINEL_ROLES`` (``lime_*``)::

    <RuleSymbols> A B C <MathSymbols> * + = a b d e <s> part <s> part
    induct: case <s> result -> rule     deduct: rule <s> case -> result     abduct: rule <s> result -> case
    case dictionary: { A : a , B : b , C : d + e }

The header lists the rule symbols in dictionary order and the 44 math symbols in random order.
LIME gets no task prefix (``uses_prefix=False``), as in the authors' data: the header already
identifies the task.  ``lime`` is the authors' mixture: each example draws one of the three modes
with equal rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.ragged import offsets_from_lengths, ragged_join, ragged_take
from synthpre.tasks.registry import Examples, Task, register
from synthpre.tokens import TokenSpace

MODES = ("induct", "deduct", "abduct")
INDUCT, DEDUCT, ABDUCT = range(3)
Ragged = tuple[np.ndarray, np.ndarray]  # (values, offsets)


@dataclass(frozen=True)
class LimeParams:
    min_rule_symbols: int = 3
    max_rule_symbols: int = 5
    min_rule_math: int = 5
    max_rule_math: int = 19
    min_substitution: int = 2
    max_substitution: int = 8
    rule_math_symbols: int = 20
    substitution_only_symbols: int = 24

    @property
    def num_math_symbols(self) -> int:
        return self.rule_math_symbols + self.substitution_only_symbols

    def validate(self, space: TokenSpace) -> None:
        ranges = [
            ("rule_symbols", self.min_rule_symbols, self.max_rule_symbols),
            ("rule_math", self.min_rule_math, self.max_rule_math),
            ("substitution", self.min_substitution, self.max_substitution),
        ]
        for name, lo, hi in ranges:
            if not 1 <= lo <= hi:
                raise UserError(f"lime: need 1 <= min_{name} <= max_{name}, got {lo} and {hi}")
        if self.rule_math_symbols < 1 or self.substitution_only_symbols < 0:
            raise UserError("lime: need rule_math_symbols >= 1 and substitution_only_symbols >= 0")
        needed = self.max_rule_symbols + self.num_math_symbols
        if space.num_content < needed:
            raise UserError(
                f"lime: each example needs {needed} distinct symbols but the content range "
                f"{space.lo}:{space.hi} holds {space.num_content}; widen vocab (--vocab)"
            )


# ---------------------------------------------------------------- ragged helpers


def optional_token(value: int, present: np.ndarray) -> Ragged:
    """Token ``value`` in the rows where ``present``, nothing in the others."""
    return np.full(int(present.sum()), value, dtype=np.int32), offsets_from_lengths(present.astype(np.int64))


def matrix_rows(matrix: np.ndarray, lengths: np.ndarray) -> Ragged:
    """The first ``lengths[r]`` entries of each row of ``matrix``."""
    inside = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    return matrix[inside].astype(np.int32), offsets_from_lengths(lengths)


def take_rows(part: Ragged, rows: np.ndarray) -> Ragged:
    return ragged_take(part[0], part[1], rows)


# ---------------------------------------------------------------- generation


def distinct_symbols(space: TokenSpace, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` rows of ``k`` distinct content ids, each row uniform over ordered k-subsets."""
    if space.num_content <= 1024:  # small vocabulary: a random permutation per row
        return (space.lo + np.argsort(rng.random((n, space.num_content)), axis=1)[:, :k]).astype(np.int32)
    ids = rng.integers(space.lo, space.hi + 1, (n, k), dtype=np.int32)
    while True:  # redraw the rows with a repeat (about 4% of rows for 49 of 32K ids)
        ordered = np.sort(ids, axis=1)
        bad = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if len(bad) == 0:
            return ids
        ids[bad] = rng.integers(space.lo, space.hi + 1, (len(bad), k), dtype=np.int32)


@dataclass
class LimeParts:
    """The token parts of ``n`` LIME examples (each a ragged array with ``n`` rows)."""

    header: Ragged
    rule: Ragged
    case: Ragged
    result: Ragged


def lime_parts(params: LimeParams, space: TokenSpace, rng: np.random.Generator, n: int) -> LimeParts:
    """Draw ``n`` (rule, case, result) triples with their headers, vectorized over examples."""
    p = params
    num_rule = rng.integers(p.min_rule_symbols, p.max_rule_symbols + 1, n)
    num_math = rng.integers(p.min_rule_math, p.max_rule_math + 1, n)
    symbols = distinct_symbols(space, rng, n, p.max_rule_symbols + p.num_math_symbols)
    rule_symbols, math_symbols = symbols[:, : p.max_rule_symbols], symbols[:, p.max_rule_symbols :]
    rows = np.arange(n)

    # rule string: slot j < n is symbol j, n <= j < 2n a random rule symbol, then the math draws
    rule_lengths = 2 * num_rule + num_math
    rule_offsets = offsets_from_lengths(rule_lengths)
    slot_row = np.repeat(rows, rule_lengths)
    slot = np.arange(rule_offsets[-1]) - rule_offsets[slot_row]
    draw = rng.random(len(slot))
    is_var = slot < 2 * num_rule[slot_row]
    which = np.where(
        slot < num_rule[slot_row],
        slot,
        np.where(is_var, draw * num_rule[slot_row], draw * p.rule_math_symbols).astype(np.int64),
    )
    shuffle = np.argsort(slot_row + rng.random(len(slot)), kind="stable")
    is_var, which = is_var[shuffle], which[shuffle]
    symbol_slot = np.minimum(which, p.max_rule_symbols - 1)  # (both sides are computed: keep in bounds)
    rule_values = np.where(is_var, rule_symbols[slot_row, symbol_slot], math_symbols[slot_row, which])
    rule_values = rule_values.astype(np.int32)

    # substitutions: one string per (row, rule symbol), over all math symbols
    pair_offsets = offsets_from_lengths(num_rule)
    pair_row = np.repeat(rows, num_rule)
    pair_symbol = np.arange(pair_offsets[-1]) - pair_offsets[pair_row]
    sub_lengths = rng.integers(p.min_substitution, p.max_substitution + 1, len(pair_row))
    sub_offsets = offsets_from_lengths(sub_lengths)
    sub_row = np.repeat(pair_row, sub_lengths)
    sub_values = math_symbols[sub_row, rng.integers(0, p.num_math_symbols, len(sub_row))].astype(np.int32)

    # result: each rule slot expands to its substitution (rule symbol) or to itself (math symbol)
    segment_values = np.concatenate([sub_values, rule_values])
    segment_offsets = np.concatenate([sub_offsets[:-1], len(sub_values) + np.arange(len(rule_values) + 1)])
    segment = np.where(is_var, pair_offsets[slot_row] + which, len(pair_row) + np.arange(len(rule_values)))
    result_values, _ = ragged_take(segment_values, segment_offsets, segment)
    result_lengths = np.bincount(slot_row, weights=np.diff(segment_offsets)[segment], minlength=n)

    # case dictionary: { A : a , B : b , C : d + e }
    colon, comma = space.special("lime_colon"), space.special("lime_comma")
    pairs = len(pair_row)
    entries = ragged_join(
        [
            (rule_symbols[pair_row, pair_symbol], np.arange(pairs + 1)),
            colon,
            (sub_values, sub_offsets),
            optional_token(comma, pair_symbol < num_rule[pair_row] - 1),
        ]
    )
    case = ragged_join(
        [space.special("lime_lbrace"), (entries[0], entries[1][pair_offsets]), space.special("lime_rbrace")]
    )
    header = ragged_join(
        [
            space.special("lime_rule_symbols"),
            matrix_rows(rule_symbols, num_rule),
            space.special("lime_math_symbols"),
            matrix_rows(math_symbols, np.full(n, p.num_math_symbols)),
        ]
    )
    return LimeParts(
        header=header,
        rule=(rule_values, rule_offsets),
        case=case,
        result=(result_values, offsets_from_lengths(result_lengths.astype(np.int64))),
    )


def assemble(parts: LimeParts, modes: np.ndarray, space: TokenSpace) -> Examples:
    """Lay out each example for its mode: header <s> first <s> second -> target (App. E.1)."""
    layouts = {
        INDUCT: (parts.case, parts.result, parts.rule),
        DEDUCT: (parts.rule, parts.case, parts.result),
        ABDUCT: (parts.rule, parts.result, parts.case),
    }
    made, order = [], []
    for mode, (first, second, target) in layouts.items():
        rows = np.flatnonzero(modes == mode)
        if len(rows) == 0:
            continue
        sep = space.special("lime_sep")
        inputs = ragged_join(
            [take_rows(parts.header, rows), sep, take_rows(first, rows), sep, take_rows(second, rows)]
        )
        targets = take_rows(target, rows)
        made.append(Examples(inputs[0], inputs[1], targets[0], targets[1]))
        order.append(rows)
    whole = Examples.concat(made)
    position = np.empty(len(modes), dtype=np.int64)
    position[np.concatenate(order)] = np.arange(len(modes))
    return whole.take(position)


def mode_generator(mode: int | None):
    """The block generator of one mode, or of the equal-rate mixture when ``mode`` is None."""

    def generate(params: LimeParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
        modes = rng.integers(0, len(MODES), n) if mode is None else np.full(n, mode)
        return assemble(lime_parts(params, space, rng, n), modes, space)

    return generate


# ---------------------------------------------------------------- parsing, solve and check


@dataclass
class ParsedInput:
    rule_symbols: list[int]
    math_symbols: list[int]
    first: list[int]
    second: list[int]


def parse_input(inputs: np.ndarray, space: TokenSpace) -> ParsedInput | None:
    tokens = inputs.tolist()
    sep, math_marker = space.special("lime_sep"), space.special("lime_math_symbols")
    if tokens.count(sep) != 2 or not tokens or tokens[0] != space.special("lime_rule_symbols"):
        return None
    first_sep = tokens.index(sep)
    second_sep = tokens.index(sep, first_sep + 1)
    header = tokens[:first_sep]
    if math_marker not in header:
        return None
    marker = header.index(math_marker)
    return ParsedInput(
        header[1:marker], header[marker + 1 :], tokens[first_sep + 1 : second_sep], tokens[second_sep + 1 :]
    )


def parse_case(tokens: list[int], space: TokenSpace) -> dict[int, list[int]] | None:
    """``{ A : a , B : b c }`` -> ``{A: [a], B: [b, c]}``; None if malformed or a key repeats."""
    lbrace, rbrace = space.special("lime_lbrace"), space.special("lime_rbrace")
    colon, comma = space.special("lime_colon"), space.special("lime_comma")
    if len(tokens) < 2 or tokens[0] != lbrace or tokens[-1] != rbrace:
        return None
    case: dict[int, list[int]] = {}
    body = tokens[1:-1]
    entries: list[list[int]] = [[]]
    for token in body:
        if token == comma:
            entries.append([])
        else:
            entries[-1].append(token)
    for entry in entries:
        if len(entry) < 3 or entry[1] != colon or entry[0] in case or colon in entry[2:]:
            return None
        case[entry[0]] = entry[2:]
    return case


def substitute(rule: list[int], case: dict[int, list[int]]) -> list[int]:
    return [token for symbol in rule for token in case.get(symbol, [symbol])]


def mode_of(parsed: ParsedInput, space: TokenSpace) -> int:
    """Which mode an input is: the case dictionary (starting with ``{``) is second, first, or absent."""
    lbrace = space.special("lime_lbrace")
    if parsed.second[:1] == [lbrace]:
        return DEDUCT
    return INDUCT if parsed.first[:1] == [lbrace] else ABDUCT


def solve_deduct(inputs: np.ndarray, params: LimeParams, space: TokenSpace) -> np.ndarray:
    """Apply the case dictionary to the rule string."""
    parsed = parse_input(inputs, space)
    case = parse_case(parsed.second, space) if parsed else None
    if parsed is None or case is None:
        raise ValueError("not a lime_deduct input")
    return np.asarray(substitute(parsed.first, case), dtype=np.int32)


def is_valid_rule(rule: list[int], parsed: ParsedInput) -> bool:
    """Rule and math symbols only, and every rule symbol appears (LIME's generation guarantees it)."""
    allowed = set(parsed.rule_symbols) | set(parsed.math_symbols)
    return set(rule) <= allowed and set(parsed.rule_symbols) <= set(rule)


def is_valid_case(case: dict[int, list[int]], parsed: ParsedInput) -> bool:
    """A non-empty string of math symbols for exactly the header's rule symbols."""
    math = set(parsed.math_symbols)
    return set(case) == set(parsed.rule_symbols) and all(s and set(s) <= math for s in case.values())


def check_lime(inputs: np.ndarray, targets: np.ndarray, params: LimeParams, space: TokenSpace) -> bool:
    """Any mode: the target, combined with the input's parts, satisfies rule + case = result.

    Induction and abduction can have several right answers (a rule symbol's string may also occur
    literally), so they are checked rather than compared with the generated target.
    """
    parsed = parse_input(inputs, space)
    if parsed is None:
        return False
    target = targets.tolist()
    mode = mode_of(parsed, space)
    if mode == INDUCT:
        rule, case, result = target, parse_case(parsed.first, space), parsed.second
    elif mode == DEDUCT:
        rule, case, result = parsed.first, parse_case(parsed.second, space), target
    else:
        rule, case, result = parsed.first, parse_case(target, space), parsed.second
    if case is None or not is_valid_case(case, parsed) or not is_valid_rule(rule, parsed):
        return False
    return substitute(rule, case) == result


NOTATION = {  # App. E.1's way of writing the special tokens
    "lime_sep": "<s>",
    "lime_colon": ":",
    "lime_lbrace": "{",
    "lime_rbrace": "}",
    "lime_comma": ",",
    "lime_rule_symbols": "<RuleSymbols>",
    "lime_math_symbols": "<MathSymbols>",
}


def lime_token_names(tokens: list[int], params: LimeParams | None, space: TokenSpace) -> dict[int, str]:
    """App. E.1 notation: specials as written there, rule symbols ``A B C ...`` and math symbols
    ``a b c ... z a1 b1 ...`` in header order."""
    names = {space.special(role): text for role, text in NOTATION.items()}
    parsed = parse_input(np.asarray(tokens), space)
    if parsed is not None:
        names.update({s: chr(65 + k) for k, s in enumerate(parsed.rule_symbols)})
        names.update(
            {
                s: chr(97 + k % 26) + (str(k // 26) if k >= 26 else "")
                for k, s in enumerate(parsed.math_symbols)
            }
        )
    return names


def lime_manifest(params: LimeParams, space: TokenSpace) -> dict:
    roles = ("lime_sep", "lime_colon", "lime_lbrace", "lime_rbrace", "lime_comma")
    return {
        "special_ids": {
            role: space.special(role) for role in (*roles, "lime_rule_symbols", "lime_math_symbols")
        },
        "modes": list(MODES),
    }


DEFINITIONS = {
    INDUCT: "the rule that the case dictionary rewrites into the result (LIME induction, E.1)",
    DEDUCT: "the result of applying the case dictionary to the rule (LIME deduction, E.1)",
    ABDUCT: "a case dictionary that rewrites the rule into the result (LIME abduction, E.1)",
}

for _mode, _name in enumerate(MODES):
    register(
        Task(
            name=f"lime_{_name}",
            definition=DEFINITIONS[_mode],
            generate_block=mode_generator(_mode),
            params_cls=LimeParams,
            solve=solve_deduct if _mode == DEDUCT else None,
            check=check_lime,
            uses_prefix=False,
            extra_manifest=lime_manifest,
            token_names=lime_token_names,
        )
    )
register(
    Task(
        name="lime",
        definition="lime_induct, lime_deduct or lime_abduct with equal rates (E.1)",
        generate_block=mode_generator(None),
        params_cls=LimeParams,
        check=check_lime,
        uses_prefix=False,
        extra_manifest=lime_manifest,
        token_names=lime_token_names,
    )
)
