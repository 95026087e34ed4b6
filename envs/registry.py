"""The task registry: `register(id, factory)`, `make(id)`, `registered()`."""

from __future__ import annotations

from collections.abc import Callable

from envs.base import Task, TaskError

_FACTORIES: dict[str, Callable[[], Task]] = {}
_CACHE: dict[str, Task] = {}


def register(task_id: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under `task_id`; a duplicate id is refused."""
    if task_id in _FACTORIES:
        raise TaskError(f"task id {task_id!r} is already registered")
    _FACTORIES[task_id] = factory


def registered() -> list[str]:
    """All registered task ids, in registration order."""
    return list(_FACTORIES)


def make(task_id: str) -> Task:
    """The Task registered as `task_id` (built once, then shared)."""
    if task_id not in _FACTORIES:
        raise TaskError(
            f"unknown task {task_id!r}; registered tasks: {', '.join(registered()) or '(none)'}"
        )
    if task_id not in _CACHE:
        _CACHE[task_id] = _FACTORIES[task_id]()
    return _CACHE[task_id]
