"""Every downstream metric against hand-computed values (and ROUGE / BLEU against their libraries)."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from synthpre.downstream import metrics as m
from synthpre.downstream.registry import DOWNSTREAM_TASKS
from synthpre.errors import UserError


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat!", "cat"),
        ("  an apple,  the pear. ", "apple pear"),
        ("Theater of the absurd", "theater of absurd"),  # articles only as whole words
        ("A.D. 1066", "ad 1066"),
        ("rock-'n'-roll", "rocknroll"),
        ("THE", ""),
    ],
)
def test_squad_normalization_matches_the_official_rules(text: str, normalized: str) -> None:
    assert m.squad_normalize(text) == normalized


def test_squad_em_and_f1_take_the_max_over_references() -> None:
    refs = [
        ("the anaerobic bacteria", "anaerobic bacteria", "the anaerobic bacteria that cause gas gangrene")
    ]
    assert m.squad_scores(["Anaerobic bacteria."], refs) == {"em": 100.0, "f1": 100.0}
    # "bacteria that cause" vs the long answer: overlap 3, precision 3/3, recall 3/6 -> F1 2/3;
    # vs "anaerobic bacteria": overlap 1, P 1/3, R 1/2 -> 0.4.  Max = 2/3.
    scores = m.squad_scores(["bacteria that cause"], refs)
    assert scores["em"] == 0.0
    assert scores["f1"] == pytest.approx(100 * 2 / 3)
    # two examples average; an empty prediction scores 0 (official v1.1 behaviour)
    scores = m.squad_scores(["carbon monoxide", ""], [("Carbon monoxide",), ("oxygen",)])
    assert scores == {"em": 50.0, "f1": 50.0}


def test_exact_match_and_token_f1_are_raw_strings() -> None:
    assert m.exact_match(["[IN:A ]", "[in:a ]"], [("[IN:A ]",), ("[IN:A ]",)]) == 50.0
    # "a b c" vs "a b d": overlap 2, P = R = 2/3 -> F1 2/3; no normalization: "A" != "a"
    assert m.token_f1(["a b c"], [("a b d",)]) == pytest.approx(100 * 2 / 3)
    assert m.token_f1(["A"], [("a",)]) == 0.0


def test_rouge_equals_rouge_score_directly() -> None:
    predictions = ["the cat sat on the mat . it was happy .", "a dog barked"]
    references = [("the cat was on the mat .\nthe cat was happy .",), ("the dog barked loudly",)]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=False)
    expected = {k: 0.0 for k in ("rouge1", "rouge2", "rougeLsum")}
    for p, (r,) in zip(predictions, references, strict=True):
        s = scorer.score(r, p.replace(" . ", " .\n"))
        for k in expected:
            expected[k] += 100 * s[k].fmeasure / 2
    assert m.rouge(predictions, references) == pytest.approx(expected)
    # hand check of ROUGE-1 on the second pair: overlap {dog, barked} = 2, P 2/3, R 2/4 -> F 4/7
    assert m.rouge(["a dog barked"], [("the dog barked loudly",)])["rouge1"] == pytest.approx(100 * 4 / 7)


def test_bleu_is_sacrebleu_corpus_bleu() -> None:
    predictions = ["public virtual int size(){return mSize;}", "public int x ( ) { }"]
    references = [("public virtual int size(){return mSize;}",), ("public virtual int x(){return 0;}",)]
    expected = sacrebleu.corpus_bleu(predictions, [[r[0] for r in references]]).score
    assert m.bleu(predictions, references) == pytest.approx(expected)
    assert m.bleu(["a b c d e"], [("a b c d e",)]) == pytest.approx(100.0)


def test_canonical_smiles_accuracy_and_top_k() -> None:
    aspirin = "CC(=O)Oc1ccccc1C(=O)O"
    predictions = ["OC(=O)c1ccccc1OC(C)=O", "C1CC", "CCO"]  # same molecule, invalid, wrong molecule
    references = [(aspirin,), ("CCC",), ("OCC",)]
    scores = m.smiles_scores(predictions, references)
    assert scores["canonical_top1"] == pytest.approx(100 * 2 / 3)  # "CCO" and "OCC" are ethanol
    assert scores["valid_smiles"] == pytest.approx(100 * 2 / 3)
    assert m.exact_match(predictions, references) == 0.0
    candidates = [["CCN", aspirin], ["C1CC", "C(C)C"], ["N", "N"]]
    top = m.smiles_scores([c[0] for c in candidates], references, candidates)
    assert top["canonical_top1"] == 0.0
    assert top["canonical_top2"] == pytest.approx(100 * 2 / 3)


def test_task_scorers_report_their_headline_metric() -> None:
    for task in DOWNSTREAM_TASKS.values():
        scores = task.score(["x"], [("x",)], None)
        assert task.headline_metric in scores


def test_misaligned_predictions_are_a_user_error() -> None:
    with pytest.raises(UserError, match="2 predictions for 3 references"):
        m.check_aligned(["a", "b"], [("a",), ("b",), ("c",)], "preds.jsonl")
    with pytest.raises(UserError, match="no examples"):
        m.check_aligned([], [], "preds.jsonl")
