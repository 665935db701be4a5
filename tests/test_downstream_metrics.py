"""Every downstream metric against hand-computed values, ROUGE against rouge-score, and CodeXGLUE BLEU
against the example of CodeXGLUE's README."""

from __future__ import annotations

import math

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


# CodeXGLUE code-to-code-trans evaluator/predictions.txt and references.txt (commit 90f11dc), line by line:
# its README prints "BLEU: 61.08, Acc: 50.0" for `evaluator.py -ref references.txt -pre predictions.txt`.
_CODEXGLUE_PREDICTIONS = (
    "public override void Serialize(ILittleEndianOutput out1){out1.WriteShort(field_1_vcenter);}",
    (
        "public virtual void AddAll(BlockList<T> src){if (src.size == 0){return;}int srcDirIdx = 0;for (;"
        " srcDirIdx < src.tailDirIdx; srcDirIdx++){AddAll(src.Directory[srcDirIdx], 0, BLOCK_SIZE);}"
        "if (src.tailBlkIdx != 0){AddAll(src.tailBlock, 0, src.tailBlkIdx);}}"
    ),
    (
        "public override void WriteByte(byte b){if (upto == outerInstance.blockSize){"
        "if (currentBlock != null){blocks.Add(currentBlock);}currentBlock = new byte[blockSize];upto = 0;"
        "}currentBlock[upto++] = b;}"
    ),
    "public virtual ObjectId GetObjectId(){return objectId;}",
    (
        "public virtual DeleteDomainEntryResponse DeleteDomainEntry(DeleteDomainEntryRequest request){"
        "var options = new InvokeOptions();"
        "options.RequestMarshaller = DeleteDomainEntryRequestMarshaller.Instance;"
        "options.ResponseUnmarshaller = DeleteDomainEntryResponseUnmarshaller.Instance;"
        "return Invoke<DeleteDomainEntryResponse>(request, options);}"
    ),
    (
        "public override long RamBytesUsed(){long sizeInBytes = 0;"
        "foreach (FieldIndexData entry in fields.Values){sizeInBytes += entry.RamBytesUsed();}"
        "return sizeInBytes;}"
    ),
    (
        "public string GetFullMessage(){byte[] raw = buffer;int msgB = RawParseUtils.TagMessage(raw, 0);"
        "if (msgB < 0){return string.Empty;}Encoding enc = RawParseUtils.ParseEncoding(raw);"
        "return RawParseUtils.Decode(enc, raw, msgB, raw.Length);}"
    ),
    (
        "public POIFSFileSystem(){this.phase = true;_header.BATCount = 1;_header.BATArray = (new int[]){"
        "1 };BATBlock bb = BATBlock.CreateEmptyBATBlock(bigBlockSize, false);bb.WorldBlockIndex=1;"
        "_bold_blocks.Add(bb);SetNextBlock(0, POIFSConstants.END_OF_CHAIN);"
        "SetNextBlock(1, POIFSConstants.FAT_SECTOR_BLOCK);_property_table.SetStartBlock(0);}"
    ),
    (
        "public void Init(int offset){slice = pool.Buffers[address >> ByteBlockPool.BYTE_BLOCK_SHIFT];"
        "Debug.Assert(slice != null);upto = anchor & ByteBlockPool.BYTE_BLOCK_MASK;offset0 = delegate;"
        "Debug.Assert(upto < slice.Length);}"
    ),
    "public virtual NGit.Api.SubmoduleAddCommand SetPath(string path){this.path = path;return this;}",
)
_CODEXGLUE_REFERENCES = (
    "public override void Serialize(ILittleEndianOutput out1){out1.WriteShort(field_1_vcenter);}",
    (
        "public virtual void AddAll(NGit.Util.BlockList<T> src){if (src.size == 0){return;}"
        "int srcDirIdx = 0;for (; srcDirIdx < src.tailDirIdx; srcDirIdx++){"
        "AddAll(src.directory[srcDirIdx], 0, BLOCK_SIZE);}if (src.tailBlkIdx != 0){"
        "AddAll(src.tailBlock, 0, src.tailBlkIdx);}}"
    ),
    (
        "public override void WriteByte(byte b){if (outerInstance.upto == outerInstance.blockSize){"
        "if (outerInstance.currentBlock != null){outerInstance.blocks.Add(outerInstance.currentBlock);"
        "outerInstance.blockEnd.Add(outerInstance.upto);}"
        "outerInstance.currentBlock = new byte[outerInstance.blockSize];outerInstance.upto = 0;}"
        "outerInstance.currentBlock[outerInstance.upto++] = (byte)b;}"
    ),
    "public virtual ObjectId GetObjectId(){return objectId;}",
    (
        "public virtual DeleteDomainEntryResponse DeleteDomainEntry(DeleteDomainEntryRequest request){"
        "var options = new InvokeOptions();"
        "options.RequestMarshaller = DeleteDomainEntryRequestMarshaller.Instance;"
        "options.ResponseUnmarshaller = DeleteDomainEntryResponseUnmarshaller.Instance;"
        "return Invoke<DeleteDomainEntryResponse>(request, options);}"
    ),
    "public virtual long RamBytesUsed(){return fst == null ? 0 : fst.GetSizeInBytes();}",
    (
        "public string GetFullMessage(){byte[] raw = buffer;int msgB = RawParseUtils.TagMessage(raw, 0);"
        "if (msgB < 0){return string.Empty;}Encoding enc = RawParseUtils.ParseEncoding(raw);"
        "return RawParseUtils.Decode(enc, raw, msgB, raw.Length);}"
    ),
    (
        "public POIFSFileSystem(){HeaderBlock headerBlock = new HeaderBlock(bigBlockSize);"
        "_property_table = new PropertyTable(headerBlock);_documents      = new ArrayList();"
        "_root           = null;}"
    ),
    (
        "public void Init(int address){slice = pool.Buffers[address >> ByteBlockPool.BYTE_BLOCK_SHIFT];"
        "Debug.Assert(slice != null);upto = address & ByteBlockPool.BYTE_BLOCK_MASK;offset0 = address;"
        "Debug.Assert(upto < slice.Length);}"
    ),
    "public virtual NGit.Api.SubmoduleAddCommand SetPath(string path){this.path = path;return this;}",
)


def test_codexglue_bleu_reproduces_the_codexglue_readme_example() -> None:
    references = [(r,) for r in _CODEXGLUE_REFERENCES]
    assert round(m.codexglue_bleu(_CODEXGLUE_PREDICTIONS, references), 2) == 61.08
    assert m.exact_match(_CODEXGLUE_PREDICTIONS, references) == 50.0
    # sacrebleu's defaults (13a tokenization, 'exp' smoothing) give another number on the same files
    sacre = sacrebleu.corpus_bleu(list(_CODEXGLUE_PREDICTIONS), [list(_CODEXGLUE_REFERENCES)]).score
    assert round(sacre, 2) == 71.90
    scores = DOWNSTREAM_TASKS["code_translation"].score(_CODEXGLUE_PREDICTIONS, references, None)
    assert scores == {
        "em": 50.0,
        "f1": m.token_f1(_CODEXGLUE_PREDICTIONS, references),
        "codexglue_bleu": m.codexglue_bleu(_CODEXGLUE_PREDICTIONS, references),
    }


@pytest.mark.parametrize(
    ("predictions", "references", "expected"),
    [
        # 3 tokens have no 4-gram: add-one smoothing makes that order 1/1, not 0 (unsmoothed BLEU = 0)
        (["a b c"], [("a b c",)], 100.0),
        # every order smoothed, unigrams too: (3+1)/(4+1), (2+1)/(3+1), (1+1)/(2+1), (0+1)/(1+1)
        (["a b c d"], [("a b c e",)], 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25),
        # brevity penalty exp(1 - 4/2); all four precisions are 1 after smoothing
        (["a b"], [("a b c d",)], 100 * math.exp(-1)),
        # counts pooled over the corpus, not a mean of sentence scores: unigrams (4+1)/(5+1)
        (["a b c d", "x"], [("a b c d",), ("y",)], 100 * (5 / 6) ** 0.25),
        # several references: clipped by the max count over them, length = the shortest (2 < 3: no penalty)
        (["a a b"], [("a b", "a a c")], 100 * (1 / 2) ** 0.25),
        # whitespace tokens only: "x=1;" is one token; repeated spaces are one separator
        (["int  x=1;"], [("int x = 1;",)], 100 * (2 / 3 * 1 / 2) ** 0.25 * math.exp(1 - 4 / 2)),
        (["", ""], [("a",), ("b",)], 0.0),  # no output at all (CodeXGLUE's script divides by zero)
    ],
)
def test_codexglue_bleu_by_hand(
    predictions: list[str], references: list[tuple[str, ...]], expected: float
) -> None:
    assert m.codexglue_bleu(predictions, references) == pytest.approx(expected)


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


@pytest.mark.parametrize(
    ("smiles", "same_as"),
    [
        ("C C O", "CCO"),  # RDKit alone reads "C C O" as "C" (a SMILES, then a name)
        (
            "C C ( = O ) O c 1 c c c c c 1 C ( = O ) O",
            "CC(=O)Oc1ccccc1C(=O)O",
        ),  # Molecular Transformer tokens
        ("Br c 1 c c c c c 1 . O C C", "CCO.Brc1ccccc1"),  # two reactants, in the other order
        ("C [C@@H] ( O ) N", "C[C@H](N)O"),  # the same stereocentre written from another neighbour
        ("\tCCO\n", "OCC"),
    ],
)
def test_canonical_smiles_ignores_whitespace_and_atom_order(smiles: str, same_as: str) -> None:
    assert m.canonical_smiles(smiles) is not None
    assert m.canonical_smiles(smiles) == m.canonical_smiles(same_as)


@pytest.mark.parametrize("smiles", ["C1CC", "c 1 c c c c c", "C C ( = O", "Xx", "", "  "])
def test_invalid_smiles_have_no_canonical_form(smiles: str) -> None:
    assert m.canonical_smiles(smiles) is None


def test_space_separated_predictions_score_as_molecules() -> None:
    predictions = ["C C O", "O C C . B r c 1 c c c c c 1", "C [C@@H] ( N ) O", "c 1 c c c c c"]
    references = [("C",), ("Brc1ccccc1.CCO",), ("C[C@H](N)O",), ("c1ccccc1",)]
    scores = m.smiles_scores(predictions, references)
    # ethanol is not methane (the old reading of "C C O"); the reactant set matches in any order; the
    # other enantiomer does not match; the unclosed ring is invalid
    assert scores["canonical_top1"] == 25.0
    assert scores["valid_smiles"] == 75.0
    candidates = [
        ["C C O", "C"],
        ["C C", "O C C . B r c 1 c c c c c 1"],
        ["C", "N"],
        ["c 1 c c c c c 1", "C"],
    ]
    top = m.smiles_scores([c[0] for c in candidates], references, candidates)
    assert top["canonical_top1"] == 25.0 and top["canonical_top2"] == 75.0


def test_task_scorers_report_their_headline_metric() -> None:
    """Decoded tasks score their headline metric; a language-modelling task (text_lm) has no scorer:
    its teacher-forced evaluation reports it (tests/test_text_lm.py)."""
    for task in DOWNSTREAM_TASKS.values():
        if task.is_language_model:
            assert task.score is None and task.defaults.max_decode_len is None
            continue
        scores = task.score(["x"], [("x",)], None)
        assert task.headline_metric in scores


def test_misaligned_predictions_are_a_user_error() -> None:
    with pytest.raises(UserError, match="2 predictions for 3 references"):
        m.check_aligned(["a", "b"], [("a",), ("b",), ("c",)], "preds.jsonl")
    with pytest.raises(UserError, match="no examples"):
        m.check_aligned([], [], "preds.jsonl")
