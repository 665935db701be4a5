"""Batched decoding and scoring of predictions (``synthpre evaluate`` and the fine-tuning eval hook).

Greedy decoding, or beam search with length penalty 0.6 as the authors' T5X runs (note: Hugging Face
divides by ``length ** 0.6``, T5X by ``((5 + length) / 6) ** 0.6``; the ranking differs only slightly),
up to the task's max decode length (App. D.3).  A T5 encodes the input and its decoder writes the output;
a decoder-only model continues the prompt ``input EOS`` (the rows it trained on: ``input EOS target
EOS``), left-padded in a batch so that every prompt ends where generation starts (transformers derives
the position ids from the attention mask), and only the new tokens are kept.  Predictions go to
``predictions.jsonl`` beside ``metrics.json``, both written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from synthpre.downstream.metrics import check_aligned
from synthpre.downstream.readers import TextExample
from synthpre.downstream.registry import DownstreamTask
from synthpre.errors import UserError
from synthpre.model import is_causal
from synthpre.tokenizer import TextTokenizer
from synthpre.tokens import EOS_ID, PAD_ID
from synthpre.train.engine import position_limit

LENGTH_PENALTY = 0.6


@dataclass(frozen=True)
class DecodeOptions:
    max_input_len: int
    max_decode_len: int
    beams: int = 1
    batch_size: int = 64
    show_progress: bool = False


@torch.no_grad()
def decode(
    model: torch.nn.Module, tokenizer: TextTokenizer, texts: Sequence[str], options: DecodeOptions
) -> list[list[str]]:
    """For each input text, the decoded outputs best first (``beams`` of them with beam search, else one).

    Inputs are sorted by length into batches (less padding) and the outputs put back in input order.
    """
    check_decode_lengths(model, options)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    causal = is_causal(model)
    encoded = [[*tokenizer.encode(t)[: options.max_input_len - 1], EOS_ID] for t in texts]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    outputs: list[list[str]] = [[] for _ in texts]
    starts = range(0, len(order), options.batch_size)
    for start in tqdm(starts, desc="decoding", disable=not options.show_progress, leave=False):
        rows = order[start : start + options.batch_size]
        input_ids, attention_mask = padded([encoded[r] for r in rows], left=causal)
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=options.max_decode_len,
            num_beams=options.beams,
            num_return_sequences=options.beams,
            do_sample=False,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            **({"length_penalty": LENGTH_PENALTY, "early_stopping": True} if options.beams > 1 else {}),
        )
        if causal:  # the prompt, then the new tokens
            generated = generated[:, input_ids.shape[1] :]
        sequences = generated.reshape(len(rows), options.beams, -1).cpu().tolist()
        for k, r in enumerate(rows):
            outputs[r] = [tokenizer.decode(_until_eos(seq)) for seq in sequences[k]]
    model.train(was_training)
    return outputs


def padded(rows: Sequence[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of a batch of prompts, padded to the longest: on the right
    (an encoder's input) or on the left (a decoder-only prompt, which generation continues)."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, ids in enumerate(rows):
        at = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[k, at] = torch.tensor(ids)
        attention_mask[k, at] = 1
    return input_ids, attention_mask


def check_decode_lengths(model: torch.nn.Module, options: DecodeOptions) -> None:
    """A decoder-only model reads the prompt and what it writes: ``max_input_len + max_decode_len`` must
    fit its positions (``UserError`` naming the settings)."""
    limit = position_limit(model)
    if is_causal(model) and limit is not None and options.max_input_len + options.max_decode_len > limit:
        raise UserError(
            f"max_input_len + max_decode_len = {options.max_input_len + options.max_decode_len} is above "
            f"what this model supports ({limit}): a decoder-only model reads the prompt and the output; "
            "lower max_input_len/max_decode_len (--max-input-len/--max-decode-len)"
        )


def _until_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids


def predict_and_score(
    task: DownstreamTask,
    model: torch.nn.Module,
    tokenizer: TextTokenizer,
    examples: Sequence[TextExample],
    options: DecodeOptions,
) -> tuple[list[dict], dict[str, float]]:
    """Prediction records (id, input, prediction, references[, candidates]) and the task's metrics."""
    candidates = [
        [task.postprocess(c) for c in cands]
        for cands in decode(model, tokenizer, [e.input for e in examples], options)
    ]
    predictions = [cands[0] for cands in candidates]
    references = [e.references for e in examples]
    scores = task.score(predictions, references, candidates if options.beams > 1 else None)
    records = []
    for e, cands in zip(examples, candidates, strict=True):
        record = {"id": e.id, "prediction": cands[0], "references": list(e.references)}
        if options.beams > 1:
            record["candidates"] = cands
        records.append(record)
    return records, scores


def read_predictions(path: Path, examples: Sequence[TextExample]) -> list[str]:
    """Predictions from a JSONL file ({"id", "prediction"} per line) aligned with ``examples``."""
    predictions, ids = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not a JSON object line ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prediction"), str):
            raise UserError(f"{path}:{number}: missing field 'prediction' (a string)")
        predictions.append(record["prediction"])
        ids.append(record.get("id"))
    check_aligned(predictions, examples, str(path))
    for number, (got, e) in enumerate(zip(ids, examples, strict=True), start=1):
        if got is not None and str(got) != e.id:
            raise UserError(
                f"{path}:{number}: id {got!r} but example {number} of the split is {e.id!r}: not aligned"
            )
    return predictions


def write_outputs(folder: Path, records: list[dict] | None, metrics: dict) -> Path:
    """``predictions.jsonl`` (if given) and ``metrics.json`` into ``folder``, replaced whole or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    if records is not None:
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
