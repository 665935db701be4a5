"""Stage 2: data.

- ``synthpre.data.stream``: training streams that are pure functions of (seed, step, rank), so that
  nothing but the step is saved to resume (``MixtureSource``, ``DatasetSource``, ``collate``).
- ``synthpre.data.export``: ``synthpre generate``, a task's examples as JSONL/Parquet shards plus a
  self-describing ``manifest.json``, written atomically.

Import the sub-module you need (``stream`` imports torch, ``export`` does not).
"""
