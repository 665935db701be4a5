"""Stage 1: synthetic task generators, all in one registry."""

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
