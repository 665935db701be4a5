"""LIME (App. E.1): layout, generation rules, solve/check on >= 1,000 examples per mode, mixture."""

import re

import numpy as np
import pytest

from synthpre.errors import UserError
from synthpre.tasks import get_task
from synthpre.tasks.lime import (
    ABDUCT,
    DEDUCT,
    INDUCT,
    LimeParams,
    mode_of,
    parse_case,
    parse_input,
)
from synthpre.tokens import TokenSpace

SPACE = TokenSpace()
MODE_TASKS = {"lime_induct": INDUCT, "lime_deduct": DEDUCT, "lime_abduct": ABDUCT}


def generate(name: str, n: int = 1000, space: TokenSpace = SPACE, seed: int = 0, **params):
    task = get_task(name)
    p = LimeParams(**params)
    p.validate(space)
    return task, p, task.generate_range(p, space, seed, 0, n)


@pytest.mark.parametrize("name", list(MODE_TASKS))
def test_every_generated_example_checks_and_deduct_solves(name):
    task, params, ex = generate(name, 1000)
    assert not task.uses_prefix
    for j in range(len(ex)):
        assert task.check(ex.input(j), ex.target(j), params, SPACE)
        if task.solve is not None:
            np.testing.assert_array_equal(task.solve(ex.input(j), params, SPACE), ex.target(j))
    assert (task.solve is not None) == (name == "lime_deduct")


@pytest.mark.parametrize("name", list(MODE_TASKS))
def test_check_rejects_a_changed_target(name):
    task, params, ex = generate(name, 300, seed=3)
    rng = np.random.default_rng(0)
    for j in range(len(ex)):
        target = ex.target(j).copy()
        target[rng.integers(len(target))] = SPACE.lo + SPACE.num_content - 1  # not a symbol of this example
        assert not task.check(ex.input(j), target, params, SPACE)


def test_layout_follows_app_e1():
    _, _, ex = generate("lime", 1500, seed=1)
    counts = np.zeros(3, int)
    for j in range(len(ex)):
        parsed = parse_input(ex.input(j), SPACE)
        assert parsed is not None
        assert 3 <= len(parsed.rule_symbols) <= 5 and len(parsed.math_symbols) == 44
        header = parsed.rule_symbols + parsed.math_symbols
        assert len(set(header)) == len(header)  # fresh distinct symbols
        assert all(SPACE.lo <= s <= SPACE.hi for s in header)
        mode = mode_of(parsed, SPACE)
        counts[mode] += 1
        target = ex.target(j).tolist()
        layouts = {
            INDUCT: (target, parsed.first),
            DEDUCT: (parsed.first, parsed.second),
            ABDUCT: (parsed.first, target),
        }
        rule, case_tokens = layouts[mode]
        case = parse_case(case_tokens, SPACE)
        assert list(case) == parsed.rule_symbols  # dictionary in header order
        assert all(2 <= len(s) <= 8 for s in case.values())
        rule_math = [s for s in rule if s not in case]
        assert 5 <= len(rule_math) <= 19 and set(rule_math) <= set(parsed.math_symbols)
        assert len(rule) - len(rule_math) == 2 * len(case)  # 2n rule-symbol slots, each symbol present
    assert all(abs(c / len(ex) - 1 / 3) < 0.05 for c in counts)  # equal rates


def test_case_dictionary_tokens():
    s = SPACE.special
    tokens = [
        s("lime_lbrace"),
        10,
        s("lime_colon"),
        20,
        s("lime_comma"),
        11,
        s("lime_colon"),
        21,
        22,
        s("lime_rbrace"),
    ]
    assert parse_case(tokens, SPACE) == {10: [20], 11: [21, 22]}
    assert parse_case(tokens[:-1], SPACE) is None
    assert parse_case([s("lime_lbrace"), 10, s("lime_colon"), s("lime_rbrace")], SPACE) is None


def test_induction_accepts_another_correct_rule():
    """A rule that writes a substitution literally instead of its symbol is also a right answer,
    provided every rule symbol still appears."""
    task, params, ex = generate("lime_induct", 200, seed=5)
    accepted = 0
    for j in range(len(ex)):
        parsed = parse_input(ex.input(j), SPACE)
        case = parse_case(parsed.first, SPACE)
        rule = ex.target(j).tolist()
        for symbol in case:
            if rule.count(symbol) >= 2:  # expand one occurrence; the symbol still appears elsewhere
                k = rule.index(symbol)
                alternative = rule[:k] + case[symbol] + rule[k + 1 :]
                assert task.check(ex.input(j), np.array(alternative), params, SPACE)
                accepted += 1
                break
    assert accepted > 50


def test_lengths_near_app_e1_ranges():
    _, _, ex = generate("lime", 4000, seed=2)
    assert ex.input_lengths.min() >= 68 and ex.input_lengths.max() <= 214
    assert ex.target_lengths.min() >= 7 and ex.target_lengths.max() <= 99  # App. E.1 reports 74


def test_deterministic_and_block_independent():
    task, params, whole = generate("lime", 1100, seed=7)
    part = task.generate(params, SPACE, 7, np.array([1099, 3, 1024]))
    for k, j in enumerate([1099, 3, 1024]):
        np.testing.assert_array_equal(part.input(k), whole.input(j))
        np.testing.assert_array_equal(part.target(k), whole.target(j))
    other = task.generate_range(params, SPACE, 8, 0, 5)
    assert not np.array_equal(other.input(0), whole.input(0))


def test_small_vocabulary_and_too_small_one():
    space = TokenSpace(3, 127)
    task, params, ex = generate("lime_abduct", 300, space=space)
    assert all(task.check(ex.input(j), ex.target(j), params, space) for j in range(len(ex)))
    assert ex.input_values.max() <= space.vocab_size - 1
    with pytest.raises(UserError, match="distinct symbols"):
        LimeParams().validate(TokenSpace(2, 40))


def test_manifest_names_the_special_tokens():
    manifest = get_task("lime").extra_manifest(LimeParams(), SPACE)
    assert manifest["special_ids"]["lime_sep"] == SPACE.special("lime_sep")
    assert len(set(manifest["special_ids"].values())) == 7


def test_show_letters_prints_app_e1_shape():
    from typer.testing import CliRunner

    from synthpre.cli import app

    result = CliRunner().invoke(app, ["show", "lime_deduct", "-n", "2", "--letters"])
    assert result.exit_code == 0, result.output
    sources = re.findall(r"Source:\n(.*)\n", result.output)
    assert len(sources) == 2
    for source in sources:  # <RuleSymbols> A B C <MathSymbols> a ... <s> rule <s> { A : a , B : b , C : d e }
        assert re.fullmatch(
            r"<RuleSymbols>( [A-E]){3,5} <MathSymbols>( [a-z]1?){44} <s>( [A-Za-z]1?)+ <s> \{ A :( [a-z]1?)+"
            r"( , [B-E] :( [a-z]1?)+)+ \}",
            source,
        ), source
