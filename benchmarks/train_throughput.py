"""Training throughput of the synthpre engine against a plain Hugging Face ``Seq2SeqTrainer``, and of
decoder-only models next to T5 in the engine (``--compare-causal``).

Both train the same freshly built model with the same optimizer (``torch.optim.Adafactor``, T5's
schedule) on identical batches (same examples, same order), in the same process, one after the
other; tokens/s counts real (unpadded) input + target tokens and is timed after ``--warmup`` steps.
Each trainer runs ``--repeats`` times in alternating order (on a CPU the second of two identical
runs is ~5% faster) and the best run of each is reported.
Scenarios:

- ``fixed``: every example is exactly ``--max-len`` tokens long, so padding plays no role and the
  ratio measures the loops themselves;
- ``synthetic``: the Set task with App. G's uniform lengths (10 .. max), the realistic case.  The
  engine pads each batch to its longest example (rounded to 8); the HF baseline pads to the maximum
  length as the reference recipe did (512/512, App. A), and ``hf-longest`` shows HF with dynamic padding.

``--compare-causal gpt2-tiny,llama-tiny,pythia-tiny`` (those three when no names are given) also
trains each decoder-only model with the engine on the same examples (each a row ``input EOS target
EOS``, loss on the target), with the same settings; its tokens are the same real tokens, so tokens/s
compare the architectures at equal data (the tiny models have about as many parameters: the table
lists them).  ``engine/this`` is the speed of the engine training ``--model`` over the row's.

Model FLOPs utilization: FLOPs of the real tokens from the model config (6 x multiply-adds: dense
layers, attention scores, cross-attention K/V, LM head) per second, over the bf16 matrix-product rate
measured in the same run (``--matmul-size``³ products: 8192 on a GPU) and, on a GPU of
``PEAK_BF16_FLOPS``, over its datasheet's dense bf16 peak.  On a GPU also the peak memory of each run.
Every run starts from a clean slate (torch.compile's caches and accelerate's process-wide state
reset), and ``--json`` is rewritten after every run, so a run cut short keeps the figures so far.

    python benchmarks/train_throughput.py --model t5-small [--steps 10 --batch-size 8 --max-len 128]
    python benchmarks/train_throughput.py --quick     # tiny model, a few steps (run by the tests)
    python benchmarks/train_throughput.py --model t5-tiny --compare-causal --trainers engine
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthpre.data.stream import DatasetSource, batch_indices, collate, collated_lengths
from synthpre.model import CausalSpec, build_model, count_parameters, get_spec, model_vocab_size
from synthpre.tasks import Examples, get_task
from synthpre.tokens import TokenSpace
from synthpre.train import TrainConfig, train
from synthpre.train.engine import make_optimizer
from synthpre.train.metrics import read_metrics

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
SEED = 0
TRAINERS = ("engine", "hf", "hf-longest")  # hf-longest: the synthetic scenario only
TINY_CAUSAL = "gpt2-tiny,llama-tiny,pythia-tiny"


def training_flops(config, input_len: np.ndarray, target_len: np.ndarray) -> float:
    """Training FLOPs (6 x multiply-adds) of examples with these real lengths."""
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ffn = (3 if config.is_gated_act else 2) * d * ff
    encoder = config.num_layers * (input_len * (4 * d * inner + ffn) + 2 * input_len**2 * inner)
    decoder_per_token = 4 * d * inner + 2 * d * inner + ffn  # self-attention, cross q/o, FFN
    decoder = config.num_decoder_layers * (
        target_len * decoder_per_token
        + input_len * 2 * d * inner  # cross-attention keys and values
        + 2 * target_len**2 * inner
        + 2 * target_len * input_len * inner
    )
    head = target_len * d * config.vocab_size
    return float(6 * np.sum(encoder + decoder + head))


def causal_training_flops(spec: CausalSpec, vocab_size: int, row_len: np.ndarray) -> float:
    """Training FLOPs (6 x multiply-adds) of decoder-only rows (input + target) of these real lengths:
    dense layers, attention scores (the whole row, as T5's are counted) and the LM head at every position."""
    d = spec.d_model
    ffn = (3 if spec.family == "llama" else 2) * d * spec.d_ff  # Llama: gate, up and down projections
    layers = spec.num_layers * (row_len * (4 * d * d + ffn) + 2 * row_len**2 * d)
    return float(6 * np.sum(layers + row_len * d * vocab_size))


def make_examples(scenario: str, n: int, max_len: int, space: TokenSpace) -> Examples:
    rng = np.random.default_rng(SEED)
    if scenario == "fixed":
        length = max_len - 1  # + EOS = max_len
        values = rng.integers(space.lo, space.hi + 1, (n, length), dtype=np.int32)
        offsets = np.arange(n + 1, dtype=np.int64) * length
        return Examples(values.ravel(), offsets, values.ravel().copy(), offsets.copy())
    task = get_task("set")
    params = task.params_cls(min_len=10, max_len=max_len - 3)  # task prefix (2) + payload + EOS
    return task.generate(params, space, SEED, np.arange(n))


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fresh_state() -> None:
    """What one run leaves in the process and the next must not inherit: torch.compile's graphs
    (a later model would count against its recompile limit), accelerate's process-wide state (the
    HF Trainer's mixed precision and compile settings), the GPU memory cache and its peak."""
    from accelerate.state import AcceleratorState

    torch._dynamo.reset()
    AcceleratorState._reset_state(reset_partial_state=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def matmul_flops_per_s(size: int) -> float:
    """This device's bf16 matrix-product rate: ten timed ``size``³ products of random matrices after
    three warm-ups (the rate that MFU is also measured against, besides the datasheet's)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = (torch.randn(size, size, dtype=torch.bfloat16, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    synchronize()
    return 10 * 2 * size**3 / (time.perf_counter() - start)


def datasheet_flops() -> float | None:
    """The dense bf16 peak of this GPU from its datasheet (``None`` on a CPU or an unlisted GPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def run_engine(model, data: Examples, args, out: Path) -> tuple[float, float]:
    """Tokens per wall second and per CPU second of the engine, from its metrics rows."""
    steps = args.warmup + args.steps
    config = TrainConfig(
        out_dir=str(out), max_steps=steps, batch_size=args.batch_size, max_input_len=args.max_len,
        max_target_len=args.max_len, dropout=0.1, eval_every=10**9, save_every=10**9, num_val_examples=8,
        log_every=args.warmup, precision=args.precision, tf32=args.tf32, compile=args.compile, progress=False,
    )  # fmt: skip
    source = DatasetSource(data, name="benchmark")
    train(config, model, source, source, overwrite=True)
    rows = [r for r in read_metrics(out) if r["split"] == "train"]
    first, last = rows[0], rows[-1]  # first = end of warm-up
    tokens = last["tokens"] - first["tokens"]
    return tokens / (last["elapsed_s"] - first["elapsed_s"]), tokens / (last["cpu_s"] - first["cpu_s"])


def run_hf(model, data: Examples, args, out: Path, pad_to_max: bool) -> tuple[float, float]:
    """``Seq2SeqTrainer`` on the engine's batches in the engine's order (sequential sampler)."""
    from torch.utils.data import SequentialSampler
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    steps = args.warmup + args.steps
    order = np.concatenate([batch_indices(SEED, s, 0, 1, args.batch_size, len(data)) for s in range(steps)])
    pad = args.max_len if pad_to_max else 8

    def collator(rows: list[int]) -> dict[str, torch.Tensor]:
        return collate(data.take(np.asarray(rows)), args.max_len, args.max_len, pad_multiple=pad)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[tuple[float, float]] = []

        def on_step_end(self, *_, **__):
            synchronize()
            self.times.append((time.perf_counter(), time.process_time()))

    class InOrder(Seq2SeqTrainer):
        def _get_train_sampler(self, *_, **__):
            return SequentialSampler(self.train_dataset)

    training_args = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, max_steps=steps,
        learning_rate=1e-2, lr_scheduler_type="constant", logging_strategy="no", save_strategy="no",
        report_to=[], disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), bf16=args.precision == "bf16", tf32=args.tf32 or None,
        torch_compile=args.compile, seed=SEED,
    )  # fmt: skip
    clock = Clock()
    optimizer = make_optimizer(TrainConfig(out_dir=str(out)), model)  # the engine's: same update work
    trainer = InOrder(
        model=model, args=training_args, train_dataset=order.tolist(), data_collator=collator,
        optimizers=(optimizer, None),
    )  # fmt: skip
    trainer.add_callback(clock)
    trainer.train()
    timed_rows = order[args.warmup * args.batch_size :]
    timed = data.take(timed_rows)
    tokens = float(real_tokens(timed, args.max_len).sum())
    (wall_0, cpu_0), (wall_1, cpu_1) = clock.times[args.warmup - 1], clock.times[-1]
    return tokens / (wall_1 - wall_0), tokens / (cpu_1 - cpu_0)


def real_tokens(data: Examples, max_len: int) -> np.ndarray:
    """Per example: input + target tokens after truncation, EOS included (what the engine counts)."""
    return collated_lengths(data.input_lengths, max_len) + collated_lengths(data.target_lengths, max_len)


def flops_per_token(name: str, model_config, data: Examples, max_len: int) -> float:
    """Training FLOPs per real token of these examples for the named model."""
    tokens = real_tokens(data, max_len)  # of each example: a decoder-only model's row length
    spec = get_spec(name)
    if isinstance(spec, CausalSpec):
        flops = causal_training_flops(spec, model_config.vocab_size, tokens)
    else:
        inputs, targets = (collated_lengths(n, max_len) for n in (data.input_lengths, data.target_lengths))
        flops = training_flops(model_config, inputs, targets)
    return flops / float(tokens.sum())


def summarize(runs: list[dict], rates: dict[str, float | None], reference: str) -> list[dict]:
    """One row per (scenario, model, trainer): the best of its repeats (the least disturbed), its MFU
    against each rate in ``rates``, its peak memory, and the speed of the engine training the
    ``reference`` model over its own (once the scenario's row of that run exists)."""
    rows = []
    for key in dict.fromkeys((run["scenario"], run["model"], run["trainer"]) for run in runs):
        mine = [run for run in runs if (run["scenario"], run["model"], run["trainer"]) == key]
        best = max(mine, key=lambda run: run["tokens_per_s"])
        flops = best["tokens_per_s"] * best["flops_per_token"]
        row = {
            "scenario": key[0],
            "model": key[1],
            "trainer": key[2],
            **{k: best[k] for k in ("parameters", "tokens_per_s", "tokens_per_cpu_s")},
        }
        row |= {f"mfu_{name}": flops / rate if rate else None for name, rate in rates.items()}
        memory = [run["peak_memory_gb"] for run in mine if run["peak_memory_gb"] is not None]
        row["peak_memory_gb"] = max(memory) if memory else None
        rows.append(row)
    for row in rows:
        engine = next(
            (
                r
                for r in rows
                if (r["scenario"], r["model"], r["trainer"]) == (row["scenario"], reference, "engine")
            ),
            None,
        )
        row["ratio"] = engine["tokens_per_s"] / row["tokens_per_s"] if engine else None
        row["ratio_cpu"] = engine["tokens_per_cpu_s"] / row["tokens_per_cpu_s"] if engine else None
    return rows


def print_table(results: list[dict], reference: str) -> None:
    print("tokens = real input + target tokens; CPU s = this process's CPU time (robust to a busy machine)")
    print("MFU vs the measured bf16 matrix rate / vs the datasheet's peak; memory = peak allocated (GPU)")
    print(f"engine/this = tokens/s of the engine training {reference} over this row's")
    header = ("scenario", "model", "parameters", "trainer", "tokens/s", "tokens/CPU s", "MFU meas.",
              "MFU sheet", "GiB", "engine/this", "(CPU time)")  # fmt: skip
    print("{:<10} {:<13} {:>11} {:<11} {:>10} {:>12} {:>9} {:>9} {:>6} {:>11} {:>10}".format(*header))
    for row in results:
        shares = [f"{row[k]:.1%}" if row[k] is not None else "-" for k in ("mfu_measured", "mfu_datasheet")]
        memory = f"{row['peak_memory_gb']:.1f}" if row["peak_memory_gb"] is not None else "-"
        speeds = f"{row['tokens_per_s']:>10,.0f} {row['tokens_per_cpu_s']:>12,.0f}"
        ratios = f"{row['ratio']:>11.2f} {row['ratio_cpu']:>10.2f}"
        name = f"{row['scenario']:<10} {row['model']:<13} {row['parameters']:>11,} {row['trainer']:<11}"
        print(f"{name} {speeds} {shares[0]:>9} {shares[1]:>9} {memory:>6} {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="t5-small")
    parser.add_argument("--quick", action="store_true", help="t5-tiny, 4+2 steps, batch 4, length 32")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer, in alternating order")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=128, help="max input and target length")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scenarios", default="fixed,synthetic")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="of engine,hf,hf-longest")
    parser.add_argument(
        "--compare-causal",
        nargs="?",
        const=TINY_CAUSAL,
        default="",
        metavar="MODELS",
        help=f"also train these decoder-only models with the engine on the same examples ({TINY_CAUSAL} "
        "when no names are given)",
    )
    parser.add_argument(
        "--matmul-size",
        type=int,
        default=None,
        help="N of the N³ bf16 product timed (8192 on a GPU, else 256)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.model, args.steps, args.warmup, args.batch_size, args.max_len = "t5-tiny", 4, 2, 4, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = set(args.trainers.split(",")) - set(TRAINERS)
    if unknown or "engine" not in args.trainers.split(","):
        parser.error(f"--trainers: engine and any of {TRAINERS[1:]} (not {sorted(unknown)})")
    causal = [name for name in args.compare_causal.split(",") if name]
    if isinstance(get_spec(args.model), CausalSpec) or not all(
        isinstance(get_spec(name), CausalSpec) for name in causal
    ):
        parser.error("--model is an encoder-decoder model (T5); --compare-causal names decoder-only ones")
    space = TokenSpace(3, 127) if get_spec(args.model).vocab_from_tokens else TokenSpace()
    cpu = f"CPU, {torch.get_num_threads()} threads"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    print(f"{args.model}, batch {args.batch_size}, max length {args.max_len}, {args.precision}, {device}")
    matmul_size = args.matmul_size or (8192 if torch.cuda.is_available() else 256)
    rates = {"measured": matmul_flops_per_s(matmul_size), "datasheet": datasheet_flops()}
    print(f"bf16 {matmul_size}³ matrix product: {rates['measured'] / 1e12:,.1f} TFLOP/s measured", end="")
    print(f", datasheet {rates['datasheet'] / 1e12:,.0f}" if rates["datasheet"] else "")
    runs: list[dict] = []

    def write_json() -> None:
        if args.json:
            settings = {**vars(args), "json": str(args.json)}
            figures = {"device": device, "matmul_size": matmul_size, "bf16_flops_per_s": rates}
            results = summarize(runs, rates, args.model)
            args.json.write_text(json.dumps({"args": settings, **figures, "results": results}, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        for scenario in args.scenarios.split(","):
            data = make_examples(scenario, (args.warmup + args.steps) * args.batch_size, args.max_len, space)
            trainers = [t for t in args.trainers.split(",") if scenario == "synthetic" or t != "hf-longest"]
            order = [(args.model, trainer) for trainer in trainers] + [(name, "engine") for name in causal]
            for repeat in range(args.repeats):  # the order alternates: whoever runs second is favoured
                for name, trainer in order if repeat % 2 == 0 else order[::-1]:
                    fresh_state()
                    model = build_model(name, vocab_size=model_vocab_size(name, space), seed=SEED)
                    out = Path(tmp) / f"{scenario}-{name}-{trainer}-{repeat}"
                    if trainer == "engine":
                        speed, per_cpu_s = run_engine(model, data, args, out)
                    else:
                        speed, per_cpu_s = run_hf(model, data, args, out, pad_to_max=trainer == "hf")
                    runs.append({
                        "scenario": scenario, "model": name, "trainer": trainer,
                        "parameters": count_parameters(model), "tokens_per_s": speed,
                        "tokens_per_cpu_s": per_cpu_s, "peak_memory_gb": peak_memory_gb(),
                        "flops_per_token": flops_per_token(name, model.config, data, args.max_len),
                    })  # fmt: skip
                    write_json()
    print_table(summarize(runs, rates, args.model), args.model)


if __name__ == "__main__":
    main()
