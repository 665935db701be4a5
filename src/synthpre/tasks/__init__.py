"""Stage 1: synthetic task generators, all in one registry.

``registry``: ``Task``, ``Examples`` and the registry; ``ragged``: the ragged-array (values + offsets)
operations and row-wise random draws the generators are built from; one module per task family.
"""

from synthpre.tasks.registry import (
    BLOCK_SIZE,
    VALIDATION_OFFSET,
    Examples,
    Task,
    all_tasks,
    get_task,
    register,
)

__all__ = ["BLOCK_SIZE", "VALIDATION_OFFSET", "Examples", "Task", "all_tasks", "get_task", "register"]
