"""Checkpoints of the engine: atomic and checksummed (which one a run selects: ``selection.py``).

``checkpoints/step_N/`` holds ``model/`` (a Hugging Face folder, safetensors, loadable by plain
transformers), ``optimizer.pt``, ``trainer_state.json`` (step, evaluations so far) and one
``rng_rank{r}.pt`` per process.  A checkpoint is written under ``.tmp-step_N`` and renamed once
``checksums.json`` (sha256 of every file) is in place, so a run killed at any moment leaves either
a complete checkpoint or a temporary folder that is ignored.  A checkpoint whose files do not match
their checksums is reported and skipped: resuming falls back to the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

CHECKSUMS = "checksums.json"
STATE = "trainer_state.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def step_dir_name(step: int) -> str:
    return f"step_{step}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_name(name: str) -> str:
    """``.tmp-NAME.PID.HEX``: unique per process and call, so that writers of one file never share one."""
    return f"{TMP_PREFIX}{name}.{os.getpid()}.{secrets.token_hex(6)}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name of its own, fsync, rename: readers never see half a file, and
    concurrent writers (threads or processes) each rename a whole file of theirs (the last one wins)."""
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name))
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def load_optimizer(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore the optimizer written by :func:`full_state` (every process; FSDP keeps its shards).
    Read onto the CPU, whatever device wrote it (one process on a GPU saves its state there), and
    moved to each parameter's device on loading: a GPU run resumes on a CPU, and the other way round."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def begin_checkpoint(root: Path, step: int) -> Path:
    """A fresh temporary folder for step ``step`` (main process only)."""
    tmp = root / (TMP_PREFIX + step_dir_name(step))
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def full_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool, several: bool
) -> tuple[dict | None, dict]:
    """Whole (unsharded) model and optimizer state dicts, keyed by parameter names, for every process
    to call: an FSDP-sharded model gathers its shards, to the main process's CPU when ``several``.
    The model state is ``None`` when the model is not sharded (``save_pretrained`` reads it itself).
    One optimizer format whatever the parallelism: a run may resume on another number of processes."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=several)
    model_state = get_model_state_dict(model, options=options) if sharded else None
    return model_state, get_optimizer_state_dict(model, optimizer, options=options)


def write_main_files(
    tmp: Path, model: torch.nn.Module, model_state: dict | None, optimizer_state: dict, state: dict
) -> None:
    """Model folder, optimizer state and trainer state (main process only)."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the engine has its own bar
    try:
        model.save_pretrained(tmp / "model", state_dict=model_state, safe_serialization=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    torch.save(optimizer_state, tmp / "optimizer.pt")
    (tmp / STATE).write_text(json.dumps(state, indent=2))


def write_rng_file(tmp: Path, rank: int) -> None:
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")


def finish_checkpoint(tmp: Path, step: int) -> Path:
    """Checksum every file, then rename the temporary folder to ``step_N`` (main process only)."""
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    for path in files:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    checksums = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
    write_json_atomic(tmp / CHECKSUMS, checksums)
    final = tmp.parent / step_dir_name(step)
    if final.exists():  # a corrupt checkpoint of the same step from a killed run
        remove_checkpoint(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return final


def remove_checkpoint(path: Path) -> None:
    """Rename first, then delete: a deletion cut short never leaves a half checkpoint named ``step_N``."""
    trash = path.with_name(TRASH_PREFIX + path.name)
    if trash.exists():
        shutil.rmtree(trash)
    os.rename(path, trash)
    shutil.rmtree(trash)


def is_temporary_of(file_name: str, name: str) -> bool:
    """Whether ``file_name`` is a temporary file of :func:`write_json_atomic` writing ``name`` (also
    ``.tmp-NAME``, the name of older versions)."""
    prefix = TMP_PREFIX + name
    return file_name == prefix or file_name.startswith(prefix + ".")


def remove_leftovers(root: Path, names: tuple[str, ...] | None = None) -> None:
    """Delete the temporary and half-deleted folders and files a killed run may have left under
    ``root`` (``.tmp-step_N``, ``.tmp-NAME.PID.HEX``, ``.trash-step_N``); with ``names``, only the
    temporary files of those names (a run folder's own JSON files: other files there are not ours)."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if names is None:
            if not path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                continue
        elif path.is_dir() or not any(is_temporary_of(path.name, name) for name in names):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def checkpoint_steps(root: Path) -> list[int]:
    """Steps of the folders named ``step_N`` under ``root``, newest first (not yet verified)."""
    if not root.is_dir():
        return []
    steps = [int(p.name[5:]) for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")]
    return sorted(steps, reverse=True)


def verify_checkpoint(path: Path) -> str | None:
    """``None`` when every file matches ``checksums.json``; otherwise what is wrong."""
    sums_path = path / CHECKSUMS
    if not sums_path.is_file():
        return f"{CHECKSUMS} is missing (half-written checkpoint)"
    try:
        checksums = json.loads(sums_path.read_text())
    except json.JSONDecodeError:
        return f"{CHECKSUMS} is not valid JSON"
    for name, expected in checksums.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256_file(file) != expected:
            return f"{name} does not match its checksum (corrupt)"
    return None


def newest_valid_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint; corrupt ones are logged (a warning) and skipped."""
    for step in checkpoint_steps(root):
        path = root / step_dir_name(step)
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        logger.warning("checkpoint %s is unusable: %s; trying the previous one", path, problem)
    return None


def load_model_weights(model: torch.nn.Module, model_dir: Path) -> None:
    """Load ``model.safetensors`` into ``model``; keys left out by ``save_pretrained`` must be tied copies.

    ``save_pretrained`` writes some parameters under their family's original names (GPT-NeoX's
    ``lm_head`` as ``embed_out``): they are renamed back with the model's own mapping, as
    ``from_pretrained`` does."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    renamings = [t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)]
    saved = load_file(model_dir / "model.safetensors")
    state = {rename_source_key(key, renamings, [])[0]: tensor for key, tensor in saved.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded_pointers = {tensor.data_ptr() for name, tensor in model.state_dict().items() if name in state}
    untied = [name for name in missing if model.state_dict()[name].data_ptr() not in loaded_pointers]
    if untied or unexpected:
        raise ValueError(
            f"checkpoint {model_dir} does not fit the model: missing {untied}, unexpected {unexpected}"
        )


def load_checkpoint(path: Path, model: torch.nn.Module, rank: int) -> dict:
    """Restore the (not yet sharded) model and this process's RNG; return the trainer state."""
    load_model_weights(model, path / "model")
    rng_file = path / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    else:  # resumed on more processes than were saved: the data stay exact, dropout masks do not
        logger.warning("%s has no RNG state for process %d; dropout continues from the seed", path, rank)
    return json.loads((path / STATE).read_text())
