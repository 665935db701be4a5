"""text_span_corruption over a local corpus with a tiny SentencePiece model trained offline here."""

from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from synthpre.errors import UserError
from synthpre.tasks import BLOCK_SIZE, get_task
from synthpre.tasks.span_corruption import reassemble, sentinel_ids
from synthpre.tasks.text import TextParams, load_corpus, read_documents
from synthpre.tokens import TokenSpace

WORDS = ["the", "of", "a", "river", "city", "people", "north", "small", "old", "green", "house", "road"]
SPACE = TokenSpace(2, 299)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    paragraphs = [
        "\n".join(" ".join(rng.choice(WORDS, rng.integers(5, 15))) + "." for _ in range(rng.integers(1, 6)))
        for _ in range(60)
    ]
    first, second = folder / "a.txt", folder / "b.txt"
    first.write_text("\n\n".join(paragraphs[:40]) + "\n")
    second.write_text("\n\n \n".join(paragraphs[40:]))
    spm.SentencePieceTrainer.train(
        input=str(first), model_prefix=str(folder / "tiny"), vocab_size=120, hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2, num_threads=1,
    )  # fmt: skip
    return first, second, folder / "tiny.model"


def params_for(corpus, **overrides) -> TextParams:
    first, second, model = corpus
    return TextParams(paths=f"{first},{second}", tokenizer=str(model), **overrides)


def test_documents_split_at_blank_lines(corpus):
    assert len(read_documents(corpus[:2])) == 60


def test_examples_are_corrupted_chunks_in_order(corpus):
    params = params_for(corpus, sequence_length=32)
    params.validate(SPACE)
    task = get_task("text_span_corruption")
    chunks = load_corpus(params)
    assert (
        chunks.num_chunks > 60 and np.diff(chunks.offsets).max() == 32 and np.diff(chunks.offsets).min() >= 2
    )
    ex = task.generate_range(params, SPACE, 0, 0, chunks.num_chunks + 5)
    sentinels = sentinel_ids(SPACE)
    for i in range(len(ex)):
        chunk = chunks.values[
            chunks.offsets[i % chunks.num_chunks] : chunks.offsets[i % chunks.num_chunks + 1]
        ]
        np.testing.assert_array_equal(reassemble(ex.input(i), ex.target(i), sentinels), chunk)
    # the second pass over the corpus gets new noise
    assert not np.array_equal(ex.input(chunks.num_chunks), ex.input(0)) or len(ex.input(0)) < 4
    manifest = task.extra_manifest(params, SPACE)
    assert manifest["num_chunks"] == chunks.num_chunks and manifest["sentinel_ids"][0] == SPACE.sentinel(0)


def test_block_index_selects_the_chunks_and_is_deterministic(corpus):
    params = params_for(corpus, sequence_length=8)
    task = get_task("text_span_corruption")
    n = load_corpus(params).num_chunks
    indices = np.array([BLOCK_SIZE + 3, 5, 2 * BLOCK_SIZE])
    picked = task.generate(params, SPACE, 1, indices)
    again = task.generate(params, SPACE, 1, indices)
    np.testing.assert_array_equal(picked.input_values, again.input_values)
    whole = task.generate_range(params, SPACE, 1, 0, 2 * BLOCK_SIZE + 1)
    for k, i in enumerate(indices):
        np.testing.assert_array_equal(picked.input(k), whole.input(i))
        chunks = load_corpus(params)
        c = i % n
        np.testing.assert_array_equal(
            reassemble(picked.input(k), picked.target(k), sentinel_ids(SPACE)),
            chunks.values[chunks.offsets[c] : chunks.offsets[c + 1]],
        )


def test_tokenizer_folder_works_too(corpus, tmp_path):
    from synthpre.tokenizer import train_sentencepiece

    folder = tmp_path / "tok"
    train_sentencepiece([corpus[0].read_text()], folder, vocab_size=100)
    params = TextParams(paths=str(corpus[0]), tokenizer=str(folder), sequence_length=64)
    params.validate(SPACE)
    ex = get_task("text_span_corruption").generate_range(params, SPACE, 0, 0, 10)
    assert ex.input_values.max() <= SPACE.sentinel(0)


def test_bad_input(corpus, tmp_path):
    with pytest.raises(UserError, match="no text files"):
        TextParams().validate(SPACE)
    with pytest.raises(UserError, match="not found"):
        TextParams(paths=str(tmp_path / "none.txt"), tokenizer=str(corpus[2])).validate(SPACE)
    with pytest.raises(UserError, match="outside the content range"):
        params_for(corpus).validate(TokenSpace(2, 10))
    with pytest.raises(UserError, match="sentinels"):
        params_for(corpus, sequence_length=5000).validate(SPACE)


def test_generate_command_with_params(corpus, tmp_path):
    import json

    from typer.testing import CliRunner

    from synthpre.cli import app

    first, second, model = corpus
    out = tmp_path / "data"
    args = [
        "generate",
        "text_span_corruption",
        "--num",
        "50",
        "--out",
        str(out),
        "--vocab",
        "2:299",
        "--quiet",
    ]
    args += [
        "--param",
        f"paths={first},{second}",
        "--param",
        f"tokenizer={model}",
        "--param",
        "sequence_length=40",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["paths"] == [str(first), str(second)] and manifest["num_chunks"] > 50
    bad = CliRunner().invoke(
        app, ["generate", "text_span_corruption", "--num", "5", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()
