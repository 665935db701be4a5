"""Downstream metrics, all in percent (0..100), each a pure function of predictions and references.

``predictions[i]`` is the model's top output for example ``i``; ``references[i]`` holds one or more
acceptable targets (SQuAD has several answers; the other tasks one).  ``candidates[i]`` (optional)
lists the beam's outputs best first, for top-k accuracy.
"""

from __future__ import annotations

import collections
import math
import operator
import re
import string
from collections.abc import Sequence
from functools import lru_cache, reduce

from synthpre.errors import UserError

References = Sequence[Sequence[str]]


def check_aligned(predictions: Sequence[object], references: Sequence[object], where: str) -> None:
    """A prediction per reference, in order: anything else is a ``UserError``."""
    if len(predictions) != len(references):
        raise UserError(
            f"{where}: {len(predictions)} predictions for {len(references)} references; "
            "the predictions must have one line per example of the split, in the split's order"
        )
    if not references:
        raise UserError(f"{where}: no examples to score")


def exact_match(predictions: Sequence[str], references: References) -> float:
    """Raw string equality (after stripping outer whitespace), max over references."""
    hits = sum(
        any(p.strip() == r.strip() for r in refs) for p, refs in zip(predictions, references, strict=True)
    )
    return 100.0 * hits / len(predictions)


def _f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    common = collections.Counter(prediction_tokens) & collections.Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:  # as the official v1.1 script: two empty answers score 0 too
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: References) -> float:
    """Whitespace-token F1 without normalization (the authors' semantic-parsing metric), max over refs."""
    scores = [
        max(_f1(p.split(), r.split()) for r in refs) for p, refs in zip(predictions, references, strict=True)
    ]
    return 100.0 * sum(scores) / len(scores)


# --- SQuAD v1.1: the official evaluation script's answer normalization and EM/F1 -------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_scores(predictions: Sequence[str], references: References) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 over normalized answers, each the max over the references."""
    em = f1 = 0.0
    for prediction, refs in zip(predictions, references, strict=True):
        p = squad_normalize(prediction)
        em += max(float(p == squad_normalize(r)) for r in refs)
        f1 += max(_f1(p.split(), squad_normalize(r).split()) for r in refs)
    n = len(predictions)
    return {"em": 100.0 * em / n, "f1": 100.0 * f1 / n}


# --- ROUGE (Google's rouge-score) ----------------------------------------------------------------
ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")


def rouge_sentences(text: str) -> str:
    """One sentence per line for ROUGE-Lsum, without NLTK: T5 splits at " . " and we keep newlines."""
    return text.replace(" . ", " .\n")


def rouge(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Mean ROUGE F-measures (no stemmer, as T5's metric), max over references."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, references, strict=True):
        scores = [scorer.score(rouge_sentences(r), rouge_sentences(prediction)) for r in refs]
        for key in ROUGE_TYPES:
            totals[key] += max(s[key].fmeasure for s in scores)
    return {key: 100.0 * total / len(predictions) for key, total in totals.items()}


# --- BLEU of CodeXGLUE's code-to-code-trans evaluator -----------------------------------------------
BLEU_MAX_ORDER = 4


def _ngram_counts(tokens: Sequence[str]) -> collections.Counter[tuple[str, ...]]:
    return collections.Counter(
        tuple(tokens[i : i + n]) for n in range(1, BLEU_MAX_ORDER + 1) for i in range(len(tokens) - n + 1)
    )


def codexglue_bleu(predictions: Sequence[str], references: References) -> float:
    """Corpus BLEU-4 of CodeXGLUE's ``Code-Code/code-to-code-trans/evaluator/bleu.py``, re-implemented.

    That file is tensorflow/nmt's ``compute_bleu`` called with ``smooth=True``: whitespace tokens, n-gram
    counts clipped by the max over the references and pooled over the corpus, every order's precision
    add-one smoothed (``(matches + 1) / (possible + 1)``, Lin & Och 2004), the brevity penalty against
    the shortest reference.  Not rounded (its evaluator prints 2 decimals); an empty output scores 0
    where the original divides by zero.
    """
    matches, possible = [0] * BLEU_MAX_ORDER, [0] * BLEU_MAX_ORDER
    output_len = reference_len = 0
    for prediction, refs in zip(predictions, references, strict=True):
        tokens, ref_tokens = prediction.split(), [r.split() for r in refs]
        output_len += len(tokens)
        reference_len += min(len(r) for r in ref_tokens)
        ref_counts = reduce(operator.or_, (_ngram_counts(r) for r in ref_tokens))
        for ngram, count in (_ngram_counts(tokens) & ref_counts).items():
            matches[len(ngram) - 1] += count
        for n in range(1, BLEU_MAX_ORDER + 1):
            possible[n - 1] += max(len(tokens) - n + 1, 0)
    if output_len == 0:
        return 0.0
    log_precision = sum(math.log((m + 1) / (p + 1)) for m, p in zip(matches, possible, strict=True))
    brevity = 1.0 if output_len > reference_len else math.exp(1 - reference_len / output_len)
    return 100.0 * math.exp(log_precision / BLEU_MAX_ORDER) * brevity


# --- SMILES (RDKit) --------------------------------------------------------------------------------
@lru_cache(maxsize=200_000)
def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical (isomeric) SMILES, or ``None`` when the string is not a valid molecule.

    Whitespace is removed first, as Molecular Transformer's ``score_predictions.py`` does
    (``''.join(line.strip().split(' '))``), so tokenized output ``"C C O"`` reads as ``CCO``; RDKit
    would read the text before the first space as the SMILES and the rest as a name.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    joined = "".join(smiles.split())
    mol = Chem.MolFromSmiles(joined) if joined else None
    return None if mol is None else Chem.MolToSmiles(mol)


def _same_molecule(prediction: str, reference: str) -> bool:
    canonical = canonical_smiles(prediction)
    return canonical is not None and canonical == canonical_smiles(reference)


def smiles_scores(
    predictions: Sequence[str], references: References, candidates: Sequence[Sequence[str]] | None = None
) -> dict[str, float]:
    """Canonical-SMILES top-1 accuracy, validity, and top-k accuracy when a beam gave k candidates."""
    n = len(predictions)
    scores = {
        "canonical_top1": 100.0
        * sum(_same_molecule(p, refs[0]) for p, refs in zip(predictions, references, strict=True))
        / n,
        "valid_smiles": 100.0 * sum(canonical_smiles(p) is not None for p in predictions) / n,
    }
    if candidates is not None and min(len(c) for c in candidates) > 1:
        k = min(len(c) for c in candidates)
        hits = sum(
            any(_same_molecule(c, refs[0]) for c in cands[:k])
            for cands, refs in zip(candidates, references, strict=True)
        )
        scores[f"canonical_top{k}"] = 100.0 * hits / n
    return scores
