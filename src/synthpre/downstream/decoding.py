"""Batched decoding and scoring of predictions (``synthpre evaluate`` and the fine-tuning eval hook).

Greedy decoding, or beam search with length penalty 0.6 as the authors' T5X runs (note: Hugging Face
divides by ``length ** 0.6``, T5X by ``((5 + length) / 6) ** 0.6``; the ranking differs only slightly),
up to the task's max decode length (App. D.3).  Predictions go to ``predictions.jsonl`` beside
``metrics.json``, both written under a temporary name and renamed.
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
from synthpre.tokenizer import TextTokenizer
from synthpre.tokens import EOS_ID, PAD_ID

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
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = [[*tokenizer.encode(t)[: options.max_input_len - 1], EOS_ID] for t in texts]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    outputs: list[list[str]] = [[] for _ in texts]
    starts = range(0, len(order), options.batch_size)
    for start in tqdm(starts, desc="decoding", disable=not options.show_progress, leave=False):
        rows = order[start : start + options.batch_size]
        width = max(len(encoded[r]) for r in rows)
        input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        for k, r in enumerate(rows):
            input_ids[k, : len(encoded[r])] = torch.tensor(encoded[r])
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=(input_ids != PAD_ID).long().to(device),
            max_new_tokens=options.max_decode_len,
            num_beams=options.beams,
            num_return_sequences=options.beams,
            do_sample=False,
            **({"length_penalty": LENGTH_PENALTY, "early_stopping": True} if options.beams > 1 else {}),
        )
        sequences = generated.view(len(rows), options.beams, -1).cpu().tolist()
        for k, r in enumerate(rows):
            outputs[r] = [tokenizer.decode(_until_eos(seq)) for seq in sequences[k]]
    model.train(was_training)
    return outputs


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
