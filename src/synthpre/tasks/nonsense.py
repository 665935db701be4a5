"""Nonsense Summary (Krishna et al. 2021; App. E.3): summaries of documents of nonsense words.

A document is 7..13 sentences of 5..15 words drawn from a random vocabulary of 3-letter nonsense
words (Krishna et al.: about 10 +- 3 sentences of 10 +- 5 words, vocabulary 5,000).  For each example
``num_rules`` (default 3) of the transformation rules below are chosen at random.  Each rule first
*plants* its own reserved keywords (or quotes, bullets, numbers) into the document, then its part of
the summary is computed from the finished document; the summary is the parts in the table's order.
A rule's keywords belong to it alone, so the input shows which rules apply.

A sentence is a list of *units*: a word is a unit, and so is a (marker, number) pair; plants insert
whole units, so they never split another rule's structure.  Words map onto the content ids directly:
each word is a fixed string of 2..4 ids, like the SentencePiece pieces of a nonsense word (that puts
the lengths near App. E.3's: inputs 160..560 against 175..709), and ``.``, ``,``, ``"``, ``*``, ``:``
and the digits get one id each.  When ``tokenizer`` is given, the text is tokenized instead.  No task
prefix: the authors trained on Krishna et al.'s released text pairs as they are.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.registry import Examples, Task, register
from synthpre.tokens import TokenSpace

Unit = tuple[str, ...]
Sentence = list[Unit]
Document = list[Sentence]
Summary = list[list[str]]
Words = tuple[str, ...]

BULLET, QUOTE, COLON, COMMA, PERIOD = "*", '"', ":", ",", "."
THRESHOLD = 50


# ---------------------------------------------------------------- helpers shared by the rules


def flat(units: Sentence) -> list[str]:
    return [token for unit in units for token in unit]


def is_bullet(sentence: Sentence) -> bool:
    return bool(sentence) and sentence[0] == (BULLET,)


def plain_sentences(doc: Document) -> list[int]:
    """Indices of the ordinary sentences (not bullet items): the only places where rules plant."""
    return [i for i, s in enumerate(doc) if not is_bullet(s)]


def insert(sentence: Sentence, unit: Unit, rng: random.Random, first: int = 0) -> None:
    sentence.insert(rng.randint(first, len(sentence)), unit)


def plant_in_random_sentence(doc: Document, unit: Unit, rng: random.Random) -> None:
    insert(doc[rng.choice(plain_sentences(doc))], unit, rng)


def containing(doc: Document, words: Words) -> list[int]:
    units = {(w,) for w in words}
    return [i for i, s in enumerate(doc) if any(u in units for u in s)]


def without(sentence: Sentence, words: Words) -> list[str]:
    units = {(w,) for w in words}
    return flat([u for u in sentence if u not in units])


def marked_numbers(doc: Document, marker: str) -> list[int]:
    return [int(u[1]) for s in doc for u in s if len(u) == 2 and u[0] == marker]


# ---------------------------------------------------------------- the transformation rules
# plant(doc, rng, keywords, filler) mutates the document; summarize(doc, keywords) -> its summary part.


def plant_one_keyword(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Copy keyword sentence: one keyword in one sentence."""
    plant_in_random_sentence(doc, (rng.choice(keywords),), rng)


def plant_keywords_in_several(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Copy keyword sentences: a keyword (distinct ones) in each of 2..4 distinct sentences."""
    plain = plain_sentences(doc)
    chosen = rng.sample(plain, min(len(plain), rng.randint(2, 4)))
    for i, word in zip(chosen, rng.sample(keywords, len(chosen)), strict=True):
        insert(doc[i], (word,), rng)


def copy_keyword_sentences(doc: Document, keywords: Words) -> Summary:
    """Every sentence holding a keyword, verbatim, in document order."""
    return [flat(doc[i]) for i in containing(doc, keywords)]


def copy_keyword_sentences_sorted(doc: Document, keywords: Words) -> Summary:
    """Every sentence holding a keyword, ordered by its keyword's rank in the (fixed) keyword list."""
    rank = {(w,): k for k, w in enumerate(keywords)}
    keyed = [(min(rank[u] for u in doc[i] if u in rank), i) for i in containing(doc, keywords)]
    return [flat(doc[i]) for _, i in sorted(keyed)]


def plant_quote(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Copy quoted: quote marks around 2..6 consecutive units of one sentence."""
    sentence = doc[rng.choice(plain_sentences(doc))]
    length = rng.randint(min(2, len(sentence)), min(6, len(sentence)))
    start = rng.randint(0, len(sentence) - length)
    sentence.insert(start + length, (QUOTE,))
    sentence.insert(start, (QUOTE,))


def copy_quoted(doc: Document, keywords: Words) -> Summary:
    """The text between the quote marks."""
    for sentence in doc:
        marks = [k for k, u in enumerate(sentence) if u == (QUOTE,)]
        if len(marks) == 2:
            return [flat(sentence[marks[0] + 1 : marks[1]])]
    return []


def plant_bullets(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Copy bulleted: a list of 2..4 bullet items (3..6 words each) between two sentences."""
    items = [
        [(BULLET,)] + [(w,) for w in rng.choices(filler, k=rng.randint(3, 6))]
        for _ in range(rng.randint(2, 4))
    ]
    at = rng.randint(0, len(doc))
    doc[at:at] = items


def copy_bulleted(doc: Document, keywords: Words) -> Summary:
    """Each bullet item without its bullet."""
    return [flat(s[1:]) for s in doc if is_bullet(s)]


CLASS_SIZE = 5  # keywords[c * 5] names class c; keywords[c * 5 + 1 : c * 5 + 5] are its members


def plant_class_member(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Classify keyword: one member of one of the classes somewhere."""
    members = [w for k, w in enumerate(keywords) if k % CLASS_SIZE]
    plant_in_random_sentence(doc, (rng.choice(members),), rng)


def classify_keyword(doc: Document, keywords: Words) -> Summary:
    """The name of the class of the member that occurs."""
    for k, word in enumerate(keywords):
        if k % CLASS_SIZE and containing(doc, (word,)):
            return [[keywords[k - k % CLASS_SIZE]]]
    return []


def plant_majority(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Majority keyword: one keyword 2..4 times, each other one fewer times (possibly never)."""
    winner, top = rng.randrange(len(keywords)), rng.randint(2, 4)
    for k, word in enumerate(keywords):
        for _ in range(top if k == winner else rng.randint(0, top - 1)):
            plant_in_random_sentence(doc, (word,), rng)


def majority_keyword(doc: Document, keywords: Words) -> Summary:
    """The keyword that occurs most often."""
    counts = {w: sum(u == (w,) for s in doc for u in s) for w in keywords}
    return [[max(keywords, key=lambda w: counts[w])]]


def plant_topics(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Topic segregation: 2..5 sentences each start with one of the topic words."""
    plain = plain_sentences(doc)
    for i in rng.sample(plain, min(len(plain), rng.randint(2, 5))):
        doc[i].insert(0, (rng.choice(keywords),))


def segregate_topics(doc: Document, keywords: Words) -> Summary:
    """Per topic (in keyword order): ``topic :`` and its sentences without the topic word, ``,``-joined."""
    summary = []
    for topic in keywords:
        sentences = [without(doc[i], (topic,)) for i in containing(doc, (topic,))]
        if sentences:
            joined = [token for k, s in enumerate(sentences) for token in ([COMMA] if k else []) + s]
            summary.append([topic, COLON, *joined])
    return summary


def plant_numbers(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Number threshold / largest number: 3..6 distinct numbers 0..99, each after the rule's marker;
    at least one is above the threshold."""
    above = rng.randint(THRESHOLD + 1, 99)
    others = rng.sample([x for x in range(100) if x != above], rng.randint(2, 5))
    for number in [above, *others]:
        plant_in_random_sentence(doc, (keywords[0], str(number)), rng)


def numbers_above_threshold(doc: Document, keywords: Words) -> Summary:
    """The marked numbers above 50, in document order."""
    return [[str(n) for n in marked_numbers(doc, keywords[0]) if n > THRESHOLD]]


def largest_number(doc: Document, keywords: Words) -> Summary:
    """The largest marked number."""
    return [[str(max(marked_numbers(doc, keywords[0])))]]


def plant_paraphrase_words(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Paraphrase: 1..3 words of the paraphrase table's left column in one sentence."""
    sentence = doc[rng.choice(plain_sentences(doc))]
    left = keywords[: len(keywords) // 2]
    for word in rng.sample(left, rng.randint(1, min(3, len(left)))):
        insert(sentence, (word,), rng)


def paraphrase(doc: Document, keywords: Words) -> Summary:
    """That sentence with each left-column word replaced by its right-column partner."""
    half = len(keywords) // 2
    table = dict(zip(keywords[:half], keywords[half:], strict=True))
    return [[table.get(t, t) for t in flat(doc[i])] for i in containing(doc, keywords[:half])]


def plant_join_marker(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Join clauses: the join marker ends a sentence that has a next sentence."""
    candidates = [i for i in plain_sentences(doc) if i + 1 < len(doc)]
    doc[rng.choice(candidates)].append((keywords[0],))


def join_clauses(doc: Document, keywords: Words) -> Summary:
    """The marked sentence (marker dropped), the conjunction ``keywords[1]``, then the next sentence."""
    return [
        [*without(doc[i], keywords[:1]), keywords[1], *flat(doc[i + 1])]
        for i in containing(doc, keywords[:1])
    ]


def plant_conjunction(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Break clauses: a conjunction inside a sentence (at least 2 units on each side)."""
    sentence = doc[rng.choice([i for i in plain_sentences(doc) if len(doc[i]) >= 4])]
    sentence.insert(rng.randint(2, len(sentence) - 2), (keywords[0],))


def break_clauses(doc: Document, keywords: Words) -> Summary:
    """The sentence split into two sentences at the conjunction, which is dropped."""
    summary = []
    for i in containing(doc, keywords):
        at = doc[i].index((keywords[0],))
        summary += [flat(doc[i][:at]), flat(doc[i][at + 1 :])]
    return summary


def plant_truncation(doc: Document, rng: random.Random, keywords: Words, filler: Words) -> None:
    """Truncate sentence: the truncation word after at least 2 units of a sentence."""
    sentence = doc[rng.choice([i for i in plain_sentences(doc) if len(doc[i]) >= 2])]
    insert(sentence, (keywords[0],), rng, first=2)


def truncate_sentence(doc: Document, keywords: Words) -> Summary:
    """The sentence up to (not including) the truncation word."""
    return [flat(doc[i][: doc[i].index((keywords[0],))]) for i in containing(doc, keywords)]


@dataclass(frozen=True)
class Rule:
    name: str
    num_keywords: int
    plant: Callable[[Document, random.Random, Words, Words], None]
    summarize: Callable[[Document, Words], Summary]


RULES: tuple[Rule, ...] = (
    Rule("copy_keyword_sentence", 5, plant_one_keyword, copy_keyword_sentences),
    Rule("copy_keyword_sentences", 8, plant_keywords_in_several, copy_keyword_sentences),
    Rule("copy_keyword_sentences_sorted", 8, plant_keywords_in_several, copy_keyword_sentences_sorted),
    Rule("copy_quoted", 0, plant_quote, copy_quoted),
    Rule("copy_bulleted", 0, plant_bullets, copy_bulleted),
    Rule("classify_keyword", 3 * CLASS_SIZE, plant_class_member, classify_keyword),
    Rule("majority_keyword", 4, plant_majority, majority_keyword),
    Rule("topic_segregation", 2, plant_topics, segregate_topics),
    Rule("threshold_numbers", 1, plant_numbers, numbers_above_threshold),
    Rule("largest_number", 1, plant_numbers, largest_number),
    Rule("paraphrase", 16, plant_paraphrase_words, paraphrase),
    Rule("join_clauses", 2, plant_join_marker, join_clauses),
    Rule("break_clauses", 1, plant_conjunction, break_clauses),
    Rule("truncate_sentence", 1, plant_truncation, truncate_sentence),
)
NUM_RESERVED = sum(rule.num_keywords for rule in RULES)
SYMBOLS = (PERIOD, COMMA, QUOTE, BULLET, COLON, *"0123456789")


# ---------------------------------------------------------------- vocabulary and examples


@dataclass(frozen=True)
class NonsenseParams:
    num_rules: int = 3
    vocab_size: int = 5000
    vocab_seed: int = 0
    min_sentences: int = 7
    max_sentences: int = 13
    min_words: int = 5
    max_words: int = 15
    min_word_ids: int = 2
    max_word_ids: int = 4
    tokenizer: str = ""

    def validate(self, space: TokenSpace) -> None:
        if not 1 <= self.num_rules <= len(RULES):
            raise UserError(f"nonsense_summary: num_rules={self.num_rules}; choose 1..{len(RULES)}")
        if not NUM_RESERVED + 20 <= self.vocab_size <= 26**3:
            raise UserError(
                f"nonsense_summary: vocab_size must be in {NUM_RESERVED + 20}..{26**3} (3-letter words)"
            )
        if not (3 <= self.min_sentences <= self.max_sentences and 4 <= self.min_words <= self.max_words):
            raise UserError(
                "nonsense_summary: need 3 <= min_sentences <= max_sentences and 4 <= min_words <= max_words"
            )
        if not 1 <= self.min_word_ids <= self.max_word_ids:
            raise UserError("nonsense_summary: need 1 <= min_word_ids <= max_word_ids")
        if space.num_content < len(SYMBOLS) + 20:
            raise UserError(f"nonsense_summary: content range {space.lo}:{space.hi} too small (need 35 ids)")
        if self.tokenizer:
            from synthpre.tasks.text import check_tokenizer_ids, tokenizer_function

            vocab = vocabulary(self, space)
            check_tokenizer_ids(
                tokenizer_function(self.tokenizer)([" ".join(vocab.words)]), space, "nonsense_summary"
            )


@dataclass(frozen=True)
class Vocabulary:
    words: Words
    keywords: dict[str, Words]  # rule name -> its reserved words
    filler: Words
    spelling: dict[str, tuple[int, ...]]  # word or symbol -> content ids; numbers are spelled by digits


@functools.lru_cache(maxsize=8)
def vocabulary(params: NonsenseParams, space: TokenSpace) -> Vocabulary:
    """The random vocabulary: a pure function of ``vocab_seed`` and the content range."""
    rng = np.random.default_rng([params.vocab_seed, space.lo, space.hi])
    codes = rng.choice(26**3, params.vocab_size, replace=False)
    words = tuple("".join(chr(97 + c // 26**k % 26) for k in range(3)) for c in codes.tolist())
    keywords, start = {}, 0
    for rule in RULES:
        keywords[rule.name] = words[start : start + rule.num_keywords]
        start += rule.num_keywords
    ids = (space.lo + rng.permutation(space.num_content)).tolist()
    spelling = {symbol: (ids[k],) for k, symbol in enumerate(SYMBOLS)}
    pieces = np.asarray(ids[len(SYMBOLS) :])
    lengths = rng.integers(params.min_word_ids, params.max_word_ids + 1, params.vocab_size)
    seen = set()
    for word, length in zip(words, lengths.tolist(), strict=True):
        spelled = tuple(pieces[rng.integers(0, len(pieces), length)].tolist())
        while spelled in seen:  # distinct words get distinct spellings
            spelled = tuple(pieces[rng.integers(0, len(pieces), length)].tolist())
        seen.add(spelled)
        spelling[word] = spelled
    return Vocabulary(words, keywords, words[start:], spelling)


def base_document(params: NonsenseParams, vocab: Vocabulary, rng: random.Random) -> Document:
    return [
        [(w,) for w in rng.choices(vocab.filler, k=rng.randint(params.min_words, params.max_words))]
        for _ in range(rng.randint(params.min_sentences, params.max_sentences))
    ]


def make_example(
    params: NonsenseParams, vocab: Vocabulary, rng: random.Random
) -> tuple[Document, list[Rule], Summary]:
    """Draw a document and ``num_rules`` rules, plant each rule, then summarize (rules in table order)."""
    doc = base_document(params, vocab, rng)
    rules = [RULES[k] for k in sorted(rng.sample(range(len(RULES)), params.num_rules))]
    for rule in rules:
        rule.plant(doc, rng, vocab.keywords[rule.name], vocab.filler)
    summary = [part for rule in rules for part in rule.summarize(doc, vocab.keywords[rule.name])]
    return doc, rules, summary


def words_of(sentences: list[list[str]]) -> list[str]:
    """Sentences as one token list, each sentence ending with a period."""
    return [token for sentence in sentences for token in [*sentence, PERIOD]]


def spell(tokens: list[str], vocab: Vocabulary) -> list[int]:
    """Token strings -> content ids (numbers digit by digit)."""
    spelling = vocab.spelling
    return [i for t in tokens for i in (spelling[t] if t in spelling else [spelling[d][0] for d in t])]


def generate_nonsense(
    params: NonsenseParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    vocab = vocabulary(params, space)
    pairs = []
    for seed in rng.integers(0, 2**63, n).tolist():
        doc, _, summary = make_example(params, vocab, random.Random(seed))
        pairs.append((words_of([flat(s) for s in doc]), words_of(summary)))
    if params.tokenizer:
        from synthpre.tasks.text import tokenizer_function

        encode = tokenizer_function(params.tokenizer)
        return Examples.from_lists(
            encode([" ".join(d) for d, _ in pairs]), encode([" ".join(s) for _, s in pairs])
        )
    return Examples.from_lists([spell(d, vocab) for d, _ in pairs], [spell(s, vocab) for _, s in pairs])


def nonsense_manifest(params: NonsenseParams, space: TokenSpace) -> dict:
    vocab = vocabulary(params, space)
    return {
        "rules": [rule.name for rule in RULES],
        "symbol_ids": {} if params.tokenizer else {s: vocab.spelling[s][0] for s in SYMBOLS},
    }


def nonsense_token_names(
    tokens: list[int], params: NonsenseParams | None, space: TokenSpace
) -> dict[int, str]:
    """The symbols ``. , " * :`` and the digits as themselves (word pieces get letters)."""
    params = params or NonsenseParams()
    if params.tokenizer:
        return {}
    spelling = vocabulary(params, space).spelling
    return {spelling[symbol][0]: symbol for symbol in SYMBOLS}


register(
    Task(
        name="nonsense_summary",
        definition="a nonsense document -> its summary under 3 transformation rules (E.3)",
        generate_block=generate_nonsense,
        params_cls=NonsenseParams,
        uses_prefix=False,
        extra_manifest=nonsense_manifest,
        token_names=nonsense_token_names,
    )
)
