"""Generation speed: the vectorized generators against straightforward pure-Python ones.

For every simple task: examples/s and tokens/s (input + target tokens) in memory, median of several
repeats after a warm-up, next to a pure-Python generator of the same task written for comparison
only (one example at a time with the ``random`` module, as the authors wrote theirs), and the ratio.
Then ``synthpre generate`` end to end (Parquet and JSONL files) against the pure-Python generator
writing the authors' text lines ``str(inputs)\\tstr(targets)``.  One process, one core; times are
CPU seconds of the process (``time.process_time``), so that other jobs on a shared machine count less.

    python benchmarks/generate.py            # the full table (a few minutes)
    python benchmarks/generate.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthpre.data.export import export_dataset
from synthpre.tasks import BLOCK_SIZE, get_task
from synthpre.tokens import TASK_PREFIX_ORDER, TokenSpace

SPACE = TokenSpace()
LO, HI = SPACE.lo, SPACE.hi
SEP, WORD, EMPTY = SPACE.arg_sep, SPACE.word_sep, SPACE.empty
MIN_LEN, MAX_LEN = 10, 220
Example = tuple[list[int], list[int]]

# ------------------------------------------------------------------------------------------------
# Pure-Python reference generators (comparison only): one example at a time, ``random`` module.


def _tokens(rng: random.Random, k: int) -> list[int]:
    return rng.choices(range(LO, HI + 1), k=k)


def _parts(rng: random.Random, total: int, parts: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def _runs(rng: random.Random, length: int, distinct: int) -> tuple[list[int], list[int]]:
    tokens = rng.sample(range(LO, HI + 1), distinct)
    counts = _parts(rng, length, distinct)
    return tokens, [t for t, c in zip(tokens, counts, strict=True) for _ in range(c)]


def _digits(number: int) -> list[int]:
    return [int(SPACE.digit_ids[int(d)]) for d in str(number)]


def _find(sequence: list[int], pattern: list[int]) -> int:
    m = len(pattern)
    for start in range(len(sequence) - m + 1):
        if sequence[start : start + m] == pattern:
            return start
    return -1


def py_set(rng: random.Random) -> Example:
    length = rng.randint(MIN_LEN, MAX_LEN)
    _, sequence = _runs(rng, length, rng.randint(1, length - 1))
    rng.shuffle(sequence)
    return sequence, list(dict.fromkeys(sequence))


def py_deduplicate(rng: random.Random) -> Example:
    length = rng.randint(MIN_LEN, MAX_LEN)
    tokens, sequence = _runs(rng, length, rng.randint(1, length - 1))
    return sequence, tokens


def py_sort(rng: random.Random) -> Example:
    length = rng.randint(MIN_LEN, MAX_LEN)
    distinct = rng.randint(1, (length - 2) // 2)
    tokens, sequence = _runs(rng, length - 1 - distinct, distinct)
    rng.shuffle(sequence)
    rank = {t: i for i, t in enumerate(tokens)}
    return [*sequence, SEP, *tokens], sorted(sequence, key=rank.__getitem__)


def _pair(rng: random.Random) -> tuple[list[int], list[int]]:
    length = rng.randint(MIN_LEN, MAX_LEN)
    first = rng.randint(1, length - 2)
    pool = rng.sample(range(LO, HI + 1), (length - 1) // 2)
    return rng.choices(pool, k=first), rng.choices(pool, k=length - 1 - first)


def _set_op(keep: Callable[[list[int], list[int]], list[int]]) -> Callable[[random.Random], Example]:
    def generate(rng: random.Random) -> Example:
        a, b = _pair(rng)
        return [*a, SEP, *b], keep(a, b) or [EMPTY]

    return generate


def _kept(tokens: list[int], other: list[int], present: bool) -> list[int]:
    """Distinct ``tokens`` in order of first occurrence that are (not) in ``other`` (one set, built once)."""
    other_set = set(other)
    return [t for t in dict.fromkeys(tokens) if (t in other_set) == present]


py_union = _set_op(lambda a, b: list(dict.fromkeys(a + b)))
py_intersect = _set_op(lambda a, b: _kept(a, b, True))
py_set1_minus_set2 = _set_op(lambda a, b: _kept(a, b, False))
py_set2_minus_set1 = _set_op(lambda a, b: _kept(b, a, False))


def _sequence(rng: random.Random) -> list[int]:
    return _tokens(rng, rng.randint(MIN_LEN, MAX_LEN))


def py_identity(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, list(x)


def py_reverse(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, x[::-1]


def py_duplicate(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, [t for t in x for _ in range(2)]


def py_first_token(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, x[:1]


def py_last_token(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, x[-1:]


def py_length(rng: random.Random) -> Example:
    x = _sequence(rng)
    return x, _digits(len(x))


def py_replace(rng: random.Random) -> Example:
    x = _tokens(rng, rng.randint(MIN_LEN, MAX_LEN) - 3)
    old, new = rng.choice(list(set(x))), rng.randint(LO, HI)
    return [*x, SEP, old, new], [new if t == old else t for t in x]


def py_count(rng: random.Random) -> Example:
    length = rng.randint(MIN_LEN, MAX_LEN) - 2
    token, count = rng.randint(LO, HI), rng.randint(0, length)
    others = [t + (t >= token) for t in rng.choices(range(LO, HI), k=length - count)]
    x = [token] * count + others
    rng.shuffle(x)
    return [*x, SEP, token], _digits(count)


def py_longest_word(rng: random.Random) -> Example:
    length = rng.randint(MIN_LEN, MAX_LEN)
    words = rng.randint(1, (length + 1) // 2)
    sizes = _parts(rng, length - words + 1, words)
    x: list[int] = []
    for k, size in enumerate(sizes):
        x += ([WORD] if k else []) + _tokens(rng, size)
    return x, _digits(max(sizes))


def _planted(rng: random.Random) -> tuple[list[int], list[int], bool]:
    length = rng.randint(MIN_LEN, MAX_LEN)
    m = rng.randint(1, (length - 2) // 2)
    pattern, sequence = _tokens(rng, m), _tokens(rng, length - 1 - m)
    present = rng.random() < 0.75
    if present:
        start = rng.randint(0, len(sequence) - m)
        sequence[start : start + m] = pattern
    else:
        while _find(sequence, pattern) >= 0:
            pattern = _tokens(rng, m)
    return sequence, pattern, present


def py_search(rng: random.Random) -> Example:
    sequence, pattern, present = _planted(rng)
    return [*sequence, SEP, *pattern], [SPACE.yes if present else SPACE.no]


def py_delete(rng: random.Random) -> Example:
    sequence, pattern, _ = _planted(rng)
    start = _find(sequence, pattern)
    target = sequence if start < 0 else sequence[:start] + sequence[start + len(pattern) :]
    return [*sequence, SEP, *pattern], target


PURE_PYTHON: dict[str, Callable[[random.Random], Example]] = {
    name: globals()[f"py_{name}"] for name in TASK_PREFIX_ORDER[:18]
}
APP_E_TASKS = ("lime_induct", "lime_deduct", "lime_abduct", "lime", "dyck", "nonsense_summary")

# ------------------------------------------------------------------------------------------------
# Measurements


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of this process (the machine is shared: wall time would count waiting)."""
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def numpy_speed(name: str, blocks: int, repeats: int) -> tuple[float, float]:
    task = get_task(name)
    params = task.params_cls()
    indices = np.arange(blocks * BLOCK_SIZE)
    examples = task.generate(params, SPACE, 0, indices)
    tokens = len(examples.input_values) + len(examples.target_values)
    seconds = median_seconds(lambda: task.generate(params, SPACE, 0, indices), repeats)
    return len(indices) / seconds, tokens / seconds


def python_speed(name: str, count: int, repeats: int) -> tuple[float, float]:
    generate = PURE_PYTHON[name]
    prefix = [*SPACE.prefix_ids(name), SPACE.task_sep]

    def run() -> int:
        rng = random.Random(0)
        tokens = 0
        for _ in range(count):
            inputs, targets = generate(rng)
            tokens += len(prefix) + len(inputs) + len(targets)
        return tokens

    tokens = run()
    seconds = median_seconds(run, repeats)
    return count / seconds, tokens / seconds


def end_to_end(name: str, count: int) -> dict[str, float]:
    """Examples/s of ``synthpre generate`` (export API) and of pure Python writing text lines."""
    speeds = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("parquet", "jsonl"):
            start = time.process_time()
            export_dataset(name, Path(folder) / fmt, count, fmt=fmt)
            speeds[fmt] = count / (time.process_time() - start)
        generate, prefix = PURE_PYTHON[name], [*SPACE.prefix_ids(name), SPACE.task_sep]
        start = time.process_time()
        rng = random.Random(0)
        with open(Path(folder) / "python.txt", "w") as file:
            for _ in range(count):
                inputs, targets = generate(rng)
                file.write(f"{prefix + inputs}\t{targets}\n")
        speeds["python text"] = count / (time.process_time() - start)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    args = parser.parse_args()
    blocks, python_count, repeats, export_count = (2, 100, 1, 5000) if args.quick else (32, 3000, 5, 200_000)
    print(f"one process; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (contention skews)")
    columns = ("numpy ex/s", "numpy Mtok/s", "python ex/s", "python Mtok/s", "ratio")
    print(f"{'task':16} " + " ".join(f"{c:>13}" for c in columns))
    for name in TASK_PREFIX_ORDER[:18]:
        fast, fast_tokens = numpy_speed(name, blocks, repeats)
        slow, slow_tokens = python_speed(name, python_count, repeats)
        print(
            f"{name:16} {fast:13,.0f} {fast_tokens / 1e6:13.1f} {slow:13,.0f} {slow_tokens / 1e6:13.2f} "
            f"{fast / slow:12.1f}x"
        )
    for name in APP_E_TASKS:  # no pure-Python twin: the goal is >= 0.5M tokens/s per core (LIME, Dyck)
        fast, fast_tokens = numpy_speed(name, max(1, blocks // 4), repeats)
        print(f"{name:16} {fast:13,.0f} {fast_tokens / 1e6:13.1f} {'-':>13} {'-':>13} {'-':>13}")
    for name in ("set", "identity"):
        speeds = end_to_end(name, export_count)
        python = speeds["python text"]
        print(
            f"end to end, {name}, {export_count:,} examples: "
            + ", ".join(f"{fmt} {s:,.0f} ex/s ({s / python:.1f}x)" for fmt, s in speeds.items())
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
