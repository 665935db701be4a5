"""Sequence packing (``pack_length``) against dynamic padding: tokens/s of the engine on variable lengths.

Both modes train the same freshly built decoder-only model through the engine (``synthpre.train.train``)
on the same stream of k-Shuffle Dyck words (language-model examples: an empty input, the word as the
target, lengths uniform over ``--min-len .. --max-len``): one row per example padded to the longest
of the batch (rounded to 8), or the rows packed into rows of ``--pack-length`` tokens.  Tokens/s
counts real tokens (EOS included, the same in both modes) per wall second and per CPU second, timed
from the end of ``--warmup`` steps to the last step; the padding fraction is that of the timed
batches.  Each mode runs ``--repeats`` times in alternating order, and the best run of each counts.

    python benchmarks/packing.py --threads 1          # pythia-tiny, lengths 2..252, batch 64
    python benchmarks/packing.py --quick              # a few tiny steps (run by the tests)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from synthpre.data.stream import BatchStream, MixtureSource
from synthpre.model import build_model, vocab_size_for
from synthpre.tasks import get_task
from synthpre.tokens import TokenSpace
from synthpre.train import TrainConfig, train
from synthpre.train.engine import make_collator
from synthpre.train.metrics import read_metrics

SEED = 0
SPACE = TokenSpace(3, 127)  # the demo's synthetic ids


def settings(args, out: Path, pack_length: int | None) -> TrainConfig:
    """The run of one mode: no dropout, no evaluation or checkpoint before the last step."""
    return TrainConfig(
        out_dir=str(out), max_steps=args.warmup + args.steps, batch_size=args.batch_size,
        max_input_len=2, max_target_len=args.max_len + 1, dropout=0.0, eval_every=10**9, save_every=10**9,
        num_val_examples=8, log_every=args.warmup, progress=False, pack_length=pack_length,
    )  # fmt: skip


def batch_shapes(
    config: TrainConfig, model: torch.nn.Module, source: MixtureSource, first: int
) -> tuple[float, float]:
    """(padding share, rows per step) of the batches of steps ``first ..``, collated as the engine does."""
    collator = make_collator(config, model)
    stream = BatchStream(source, config.seed, config.batch_size)
    slots = real = rows = 0
    for step in range(first, config.max_steps):
        examples = stream.global_examples(step)
        ids = collator(examples)["input_ids"]
        slots, rows, real = slots + ids.numel(), rows + len(ids), real + collator.token_counts(examples)[1]
    return 1 - real / slots, rows / (config.max_steps - first)


def run(config: TrainConfig, args, source: MixtureSource) -> dict[str, float]:
    """One training run: tokens per wall and per CPU second after the warm-up, padding, rows per step."""
    model = build_model(args.model, vocab_size=vocab_size_for(SPACE), seed=SEED)
    train(config, model, source, source.validation(), overwrite=True)
    rows = [r for r in read_metrics(Path(config.out_dir)) if r["split"] == "train"]
    first, last = rows[0], rows[-1]  # first = end of the warm-up
    tokens = last["tokens"] - first["tokens"]
    padding, rows_per_step = batch_shapes(config, model, source, args.warmup)
    return {
        "tokens_per_s": tokens / (last["elapsed_s"] - first["elapsed_s"]),
        "tokens_per_cpu_s": tokens / (last["cpu_s"] - first["cpu_s"]),
        "padding": padding,
        "rows": rows_per_step,
        "loss": last["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="pythia-tiny", help="a decoder-only model (`synthpre models`)")
    parser.add_argument("--quick", action="store_true", help="2+1 steps, batch 8, lengths 2..30")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, in alternating order")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=2, help="shortest word (even)")
    parser.add_argument("--max-len", type=int, default=252, help="longest word (even)")
    parser.add_argument("--pack-length", type=int, help="default: the longest row, rounded up to 8")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats = 2, 1, 1
        args.batch_size, args.min_len, args.max_len = 8, 2, 30
    if args.threads:
        torch.set_num_threads(args.threads)
    longest = 2 + args.max_len + 1  # max_input_len (EOS) + max_target_len (the word, EOS)
    pack_length = args.pack_length or -(-longest // 8) * 8
    task = get_task("shuffle_dyck")
    params = task.params_cls(num_types=16, min_len=args.min_len, max_len=args.max_len)
    source = MixtureSource([(task, params)], SPACE, seed=SEED)
    cpu = f"CPU, {torch.get_num_threads()} thread(s)"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    print(
        f"{args.model} on shuffle_dyck (lengths {args.min_len}..{args.max_len}), batch {args.batch_size}, "
        f"fp32, {device}; {args.steps} timed steps after {args.warmup}, best of {args.repeats}"
    )
    modes = {"unpacked": None, f"packed {pack_length}": pack_length}
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # the order alternates: whoever runs second is favoured
            for name in list(modes) if repeat % 2 == 0 else list(modes)[::-1]:
                figures = run(settings(args, Path(tmp) / name.replace(" ", "-"), modes[name]), args, source)
                if name not in best or figures["tokens_per_s"] > best[name]["tokens_per_s"]:
                    best[name] = figures
    base = best["unpacked"]
    print("tokens = real tokens (EOS included); CPU s = this process's CPU time (robust to a busy machine)")
    header = ("mode", "rows/step", "padding", "tokens/s", "tokens/CPU s", "speedup", "(CPU)", "last loss")
    print("{:<12} {:>9} {:>8} {:>9} {:>12} {:>8} {:>6} {:>10}".format(*header))
    for name, row in best.items():
        speedup = row["tokens_per_s"] / base["tokens_per_s"]
        cpu_speedup = row["tokens_per_cpu_s"] / base["tokens_per_cpu_s"]
        print(
            f"{name:<12} {row['rows']:>9.1f} {row['padding']:>8.1%} {row['tokens_per_s']:>9,.0f} "
            f"{row['tokens_per_cpu_s']:>12,.0f} {speedup:>7.2f}x {cpu_speedup:>5.2f}x {row['loss']:>10.4f}"
        )


if __name__ == "__main__":
    main()
