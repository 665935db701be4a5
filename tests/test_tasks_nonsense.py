"""Nonsense Summary: one test per transformation rule, then the whole generator."""

import random

import numpy as np
import pytest

from synthpre.errors import UserError
from synthpre.tasks import get_task
from synthpre.tasks import nonsense as ns
from synthpre.tokens import TokenSpace

SPACE = TokenSpace()
FILLER = tuple(f"w{k}" for k in range(30))


def doc_of(text: str) -> ns.Document:
    """'a b . c d' -> two sentences; 'm=70' is a (marker, number) unit."""
    return [[tuple(t.split("=")) for t in s.split()] for s in text.split(".")]


def base(rng_seed: int = 0, sentences: int = 6) -> tuple[ns.Document, random.Random]:
    rng = random.Random(rng_seed)
    return [[(w,) for w in rng.sample(FILLER, 6)] for _ in range(sentences)], rng


def tokens(doc: ns.Document) -> list[str]:
    return [t for s in doc for t in ns.flat(s)]


def test_copy_keyword_sentence():
    keywords = ("ka", "kb")
    assert ns.copy_keyword_sentences(doc_of("a b . c kb d . e"), keywords) == [["c", "kb", "d"]]
    doc, rng = base()
    ns.plant_one_keyword(doc, rng, keywords, FILLER)
    (copied,) = ns.copy_keyword_sentences(doc, keywords)
    assert len(copied) == 7 and set(copied) & set(keywords)


def test_copy_keyword_sentences_in_document_order():
    keywords = ("ka", "kb", "kc")
    assert ns.copy_keyword_sentences(doc_of("x kc . y . ka z"), keywords) == [["x", "kc"], ["ka", "z"]]
    doc, rng = base(1)
    ns.plant_keywords_in_several(doc, rng, keywords, FILLER)
    marked = ns.containing(doc, keywords)
    assert 2 <= len(marked) <= 3 and ns.copy_keyword_sentences(doc, keywords) == [
        ns.flat(doc[i]) for i in marked
    ]


def test_copy_keyword_sentences_sorted_by_keyword_rank():
    assert ns.copy_keyword_sentences_sorted(doc_of("x kc . y . ka z"), ("ka", "kb", "kc")) == [
        ["ka", "z"],
        ["x", "kc"],
    ]


def test_copy_quoted():
    assert ns.copy_quoted(doc_of('a " b c " d . e'), ()) == [["b", "c"]]
    doc, rng = base(2)
    ns.plant_quote(doc, rng, (), FILLER)
    assert tokens(doc).count('"') == 2 and 2 <= len(ns.copy_quoted(doc, ())[0]) <= 6


def test_copy_bulleted():
    assert ns.copy_bulleted(doc_of("a b . * c d . * e . f"), ()) == [["c", "d"], ["e"]]
    doc, rng = base(3)
    ns.plant_bullets(doc, rng, (), FILLER)
    items = ns.copy_bulleted(doc, ())
    assert 2 <= len(items) <= 4 and all(3 <= len(item) <= 6 for item in items)
    assert len(doc) == 6 + len(items) and ns.plain_sentences(doc) == [
        i for i in range(len(doc)) if doc[i][0] != ("*",)
    ]


def test_classify_keyword():
    keywords = ("animal", "a1", "a2", "a3", "a4", "plant", "p1", "p2", "p3", "p4")
    assert ns.classify_keyword(doc_of("x p3 y . z"), keywords) == [["plant"]]
    doc, rng = base(4)
    ns.plant_class_member(doc, rng, keywords, FILLER)
    (answer,) = ns.classify_keyword(doc, keywords)
    member = next(t for t in tokens(doc) if t in keywords)
    assert answer == [keywords[keywords.index(member) // 5 * 5]] and member not in ("animal", "plant")


def test_majority_keyword():
    keywords = ("ka", "kb", "kc")
    assert ns.majority_keyword(doc_of("ka kb . kb x . ka kb"), keywords) == [["kb"]]
    for seed in range(20):
        doc, rng = base(seed)
        ns.plant_majority(doc, rng, keywords, FILLER)
        counts = sorted((tokens(doc).count(k) for k in keywords), reverse=True)
        assert counts[0] >= 2 and counts[0] > counts[1]


def test_topic_segregation():
    doc = doc_of("t1 a b . c d . t2 e f . g t1")
    assert ns.segregate_topics(doc, ("t1", "t2")) == [["t1", ":", "a", "b", ",", "g"], ["t2", ":", "e", "f"]]
    doc, rng = base(5)
    ns.plant_topics(doc, rng, ("t1", "t2"), FILLER)
    parts = ns.segregate_topics(doc, ("t1", "t2"))
    assert 1 <= len(parts) <= 2 and all(p[1] == ":" for p in parts)


def test_number_threshold_and_largest():
    doc = doc_of("a m=30 b . m=70 . c m=55 n=90")
    assert ns.numbers_above_threshold(doc, ("m",)) == [["70", "55"]]
    assert ns.largest_number(doc, ("m",)) == [["70"]]
    for seed in range(20):
        doc, rng = base(seed)
        ns.plant_numbers(doc, rng, ("m",), FILLER)
        numbers = ns.marked_numbers(doc, "m")
        assert 3 <= len(numbers) <= 6 and len(set(numbers)) == len(numbers) and max(numbers) > ns.THRESHOLD


def test_paraphrase():
    keywords = ("p1", "p2", "q1", "q2")
    assert ns.paraphrase(doc_of("a p2 b p1 . c"), keywords) == [["a", "q2", "b", "q1"]]
    doc, rng = base(6)
    ns.plant_paraphrase_words(doc, rng, keywords, FILLER)
    (out,) = ns.paraphrase(doc, keywords)
    assert not set(out) & {"p1", "p2"} and set(out) & {"q1", "q2"}


def test_join_clauses():
    assert ns.join_clauses(doc_of("a b J . c d . e"), ("J", "AND")) == [["a", "b", "AND", "c", "d"]]
    doc, rng = base(7)
    ns.plant_join_marker(doc, rng, ("J", "AND"), FILLER)
    (joined,) = ns.join_clauses(doc, ("J", "AND"))
    assert len(joined) == 13 and joined[6] == "AND"


def test_break_clauses():
    assert ns.break_clauses(doc_of("a b C c d . e"), ("C",)) == [["a", "b"], ["c", "d"]]
    doc, rng = base(8)
    ns.plant_conjunction(doc, rng, ("C",), FILLER)
    first, second = ns.break_clauses(doc, ("C",))
    assert len(first) >= 2 and len(second) >= 2 and len(first) + len(second) == 6


def test_truncate_sentence():
    assert ns.truncate_sentence(doc_of("a b T c . d"), ("T",)) == [["a", "b"]]
    doc, rng = base(9)
    ns.plant_truncation(doc, rng, ("T",), FILLER)
    (kept,) = ns.truncate_sentence(doc, ("T",))
    assert 2 <= len(kept) <= 6


def test_rule_table_and_vocabulary():
    assert len(ns.RULES) >= 12 and len({r.name for r in ns.RULES}) == len(ns.RULES)
    vocab = ns.vocabulary(ns.NonsenseParams(), SPACE)
    reserved = [w for ws in vocab.keywords.values() for w in ws]
    assert len(set(reserved)) == ns.NUM_RESERVED and not set(reserved) & set(vocab.filler)
    assert len(set(vocab.spelling.values())) == len(vocab.spelling)  # distinct spellings
    assert all(SPACE.lo <= i <= SPACE.hi for ids in vocab.spelling.values() for i in ids)


def test_all_rules_together_stay_consistent():
    params = ns.NonsenseParams(num_rules=len(ns.RULES))
    vocab = ns.vocabulary(params, SPACE)
    for seed in range(300):
        doc, rules, _ = ns.make_example(params, vocab, random.Random(seed))
        assert len(rules) == len(ns.RULES)
        for rule in rules:  # every rule leaves a non-empty summary part
            part = rule.summarize(doc, vocab.keywords[rule.name])
            assert part and all(part), rule.name


def test_generated_examples():
    task, params = get_task("nonsense_summary"), ns.NonsenseParams()
    params.validate(SPACE)
    ex = task.generate_range(params, SPACE, 0, 0, 2048)
    again = task.generate(params, SPACE, 0, np.array([2047, 5]))
    np.testing.assert_array_equal(again.input(0), ex.input(2047))
    assert not task.uses_prefix
    assert ex.input_values.min() >= SPACE.lo and ex.input_values.max() <= SPACE.hi
    # App. E.3: inputs 175..709, outputs 12..825 (SentencePiece tokens of Krishna et al.'s text)
    assert ex.input_lengths.min() >= 120 and ex.input_lengths.max() <= 709
    assert ex.target_lengths.min() >= 2 and ex.target_lengths.max() <= 825
    period = task.extra_manifest(params, SPACE)["symbol_ids"]["."]
    assert all(ex.input(j)[-1] == period and ex.target(j)[-1] == period for j in range(100))


def test_text_mode_with_a_local_tokenizer(tmp_path):
    import sentencepiece as spm

    params = ns.NonsenseParams()
    vocab = ns.vocabulary(params, SPACE)
    corpus = tmp_path / "words.txt"
    corpus.write_text(
        "\n".join(
            " ".join(vocab.words[k : k + 20]) + ' . , : * " 0 1 2 3 4 5 6 7 8 9' for k in range(0, 5000, 20)
        )
    )
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=300, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, minloglevel=2, num_threads=1,
    )  # fmt: skip
    text_params = ns.NonsenseParams(tokenizer=str(tmp_path / "sp.model"))
    space = TokenSpace(2, 299)
    text_params.validate(space)
    ex = get_task("nonsense_summary").generate_range(text_params, space, 0, 0, 20)
    assert ex.input_values.max() <= 299 and ex.input_lengths.min() > 100


@pytest.mark.parametrize(
    "bad", [dict(num_rules=0), dict(num_rules=15), dict(vocab_size=50), dict(min_words=2)]
)
def test_bad_parameters(bad):
    with pytest.raises(UserError):
        ns.NonsenseParams(**bad).validate(SPACE)
