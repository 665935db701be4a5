"""Streams: pure functions of (seed, step, rank), epoch shuffles, mixtures, and collation (encoder-decoder
and decoder-only)."""

import numpy as np
import pytest
import torch

from synthpre.data.stream import (
    LABEL_IGNORE,
    BatchStream,
    Collator,
    DatasetSource,
    MixtureSource,
    batch_indices,
    collate,
)
from synthpre.errors import UserError
from synthpre.tasks import VALIDATION_OFFSET, Examples, get_task
from synthpre.tokens import EOS_ID, PAD_ID, TokenSpace

SPACE = TokenSpace(3, 60)


def mixture(rates=None, seed=0) -> MixtureSource:
    tasks = [
        (get_task(name), get_task(name).params_cls(min_len=5, max_len=12)) for name in ("identity", "reverse")
    ]
    return MixtureSource(tasks, SPACE, seed=seed, rates=rates)


def test_processes_split_the_same_global_batch():
    for num in (None, 50):
        whole = batch_indices(7, 3, 0, 1, 8, num)
        parts = [batch_indices(7, 3, rank, 4, 8, num) for rank in range(4)]
        assert np.array_equal(np.concatenate(parts), whole)


def test_batch_not_divisible_by_processes_is_a_user_error():
    with pytest.raises(UserError, match="not divisible"):
        batch_indices(0, 0, 0, 3, 8)


def test_finite_source_sees_every_example_once_per_epoch_in_a_new_order():
    n, batch = 24, 8  # 3 steps per epoch
    epochs = [
        np.concatenate([batch_indices(5, s, 0, 1, batch, n) for s in range(e * 3, e * 3 + 3)]) for e in (0, 1)
    ]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(epochs[0], np.concatenate([batch_indices(5, s, 0, 1, batch, n) for s in range(3)]))
    assert not np.array_equal(
        epochs[0], np.concatenate([batch_indices(6, s, 0, 1, batch, n) for s in range(3)])
    )


def test_mixture_is_deterministic_follows_rates_and_matches_the_tasks():
    source = mixture(rates=[3, 1])
    indices = np.arange(4000)
    choice = source.task_choice(indices)
    assert abs(np.mean(choice == 0) - 0.75) < 0.03
    first, again = source.examples(indices[:300]), mixture(rates=[3, 1]).examples(indices[:300])
    assert first.to_lists() == again.to_lists()
    for j in (0, 1, 150, 299):  # example j is task choice[j]'s example j
        task, params = source.tasks[choice[j]]
        expected = task.generate(params, SPACE, 0, np.array([j]))
        assert first.input(j).tolist() == expected.input(0).tolist()
        assert first.target(j).tolist() == expected.target(0).tolist()


def test_validation_is_a_disjoint_index_range():
    source = mixture()
    val = source.validation()
    assert val.index_offset == VALIDATION_OFFSET
    task, params = source.tasks[int(source.task_choice(np.array([VALIDATION_OFFSET]))[0])]
    expected = task.generate(params, SPACE, 0, np.array([VALIDATION_OFFSET]))
    assert val.examples(np.array([0])).input(0).tolist() == expected.input(0).tolist()


def test_bucketing_keeps_the_window_examples_and_reduces_padding():
    source = DatasetSource(mixture().examples(np.arange(64)))
    plain = BatchStream(source, seed=1, global_batch=8)
    bucketed = BatchStream(source, seed=1, global_batch=8, bucket_steps=4)
    window = lambda stream: [stream.batch(s) for s in range(4)]  # noqa: E731
    rows = lambda batches: sorted(tuple(row) for b in batches for row in b.to_lists()[0])  # noqa: E731
    assert rows(window(plain)) == rows(window(bucketed))
    width = lambda batches: sum(collate(b, 64, 64)["input_ids"].numel() for b in batches)  # noqa: E731
    assert width(window(bucketed)) <= width(window(plain))
    halves = [BatchStream(source, 1, 8, rank, 2, bucket_steps=4).batch(2) for rank in (0, 1)]
    assert Examples.concat(halves).to_lists() == bucketed.batch(2).to_lists()


def test_collate_appends_eos_truncates_and_pads_to_a_multiple_of_8():
    examples = Examples.from_lists([[5, 6, 7], list(range(3, 23))], [[9], [4, 4]])
    batch = collate(examples, max_input_len=12, max_target_len=8)
    assert batch["input_ids"].shape == (2, 16)  # longest 11 + EOS = 12 -> 16
    assert batch["input_ids"][0, :4].tolist() == [5, 6, 7, EOS_ID]
    assert batch["input_ids"][0, 4:].eq(PAD_ID).all()
    assert batch["input_ids"][1, :12].tolist() == [*range(3, 14), EOS_ID]
    assert batch["attention_mask"].sum(1).tolist() == [4, 12]
    assert batch["labels"].shape == (2, 8)
    assert batch["labels"][0].tolist() == [9, EOS_ID, *[LABEL_IGNORE] * 6]
    assert batch["labels"][1, :3].tolist() == [4, 4, EOS_ID]
    assert all(t.dtype == torch.int64 for t in batch.values())


def causal_reference(
    inputs: list[list[int]], targets: list[list[int]], max_input_len: int, max_target_len: int, loss_on: str
) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each row, written out one token at a time: input EOS target EOS, and
    labels[t] = ids[t + 1] where position t + 1 is learned."""
    rows = []
    for source, target in zip(inputs, targets, strict=True):
        prompt = [*source[: max_input_len - 1], EOS_ID]
        ids = [*prompt, *target[: max_target_len - 1], EOS_ID]
        first_learned = len(prompt) if loss_on == "target" else 1
        labels = [ids[t + 1] if t + 1 >= first_learned else LABEL_IGNORE for t in range(len(ids) - 1)]
        rows.append((ids, [*labels, LABEL_IGNORE]))  # nothing follows the last token
    return rows


@pytest.mark.parametrize("loss_on", ["target", "all"])
def test_causal_collation_matches_a_row_by_row_reference(loss_on):
    rng = np.random.default_rng(7)
    for round_ in range(20):
        n, pad_multiple = int(rng.integers(1, 7)), int(rng.choice([1, 3, 8]))
        max_input_len, max_target_len = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        inputs = [rng.integers(3, 60, rng.integers(0, 12)).tolist() for _ in range(n)]  # empty ones too
        targets = [rng.integers(3, 60, rng.integers(0, 12)).tolist() for _ in range(n)]
        inputs[0] = []  # an empty input: the sequence starts with EOS
        collator = Collator(max_input_len, max_target_len, pad_multiple, causal=True, loss_on=loss_on)
        examples = Examples.from_lists(inputs, targets)
        batch = collator(examples)
        expected = causal_reference(inputs, targets, max_input_len, max_target_len, loss_on)
        longest = max(len(ids) for ids, _ in expected)
        width = batch["input_ids"].shape[1]
        assert width % pad_multiple == 0 and longest <= width < longest + pad_multiple, round_
        assert longest <= collator.max_row_length
        for row, (ids, labels) in enumerate(expected):
            pad = width - len(ids)
            assert batch["input_ids"][row].tolist() == ids + [PAD_ID] * pad, (round_, row)
            assert batch["labels"][row].tolist() == labels + [LABEL_IGNORE] * pad, (round_, row)
            assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * pad, (round_, row)
        learned, real = collator.token_counts(examples)
        assert learned == int((batch["labels"] != LABEL_IGNORE).sum()) > 0
        assert real == int(batch["attention_mask"].sum()) == sum(len(ids) for ids, _ in expected)
        assert all(t.dtype == torch.int64 for t in batch.values())


def test_the_collator_counts_the_tokens_of_an_encoder_decoder_batch():
    examples = Examples.from_lists([[5, 6, 7], [], list(range(3, 23))], [[9], [4, 4, 4], []])
    collator = Collator(12, 3)
    batch = collator(examples)
    assert batch["labels"].shape[1] == 8 and collator.max_row_length == 12  # T5: no causal row
    assert collator.token_counts(examples) == (
        int((batch["labels"] != LABEL_IGNORE).sum()),
        int(batch["attention_mask"].sum() + (batch["labels"] != LABEL_IGNORE).sum()),
    )
