"""The task registry: `register(id, factory)`, `make(id)`, `registered()`."""

from __future__ import annotations

from collections.abc import Callable

from envs.base import Task, TaskError

_FACTORIES: dict[str, Callable[[], Task]] = {}
_CACHE: dict[str, Task] = {}


class DuplicateTaskError(TaskError):
    """A task id that is already registered."""

    def __init__(self, task_id: str):
        super().__init__(f"task id {task_id!r} is already registered")
        self.task_id = task_id


def register(task_id: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under `task_id`; a duplicate, blank or spaced id is refused."""
    if not isinstance(task_id, str) or not task_id or task_id != "".join(task_id.split()):
        raise TaskError(f"task id {task_id!r} must be a non-empty string without spaces")
    if not callable(factory):
        raise TaskError(f"task {task_id!r}: the factory must be callable, got {factory!r}")
    if task_id in _FACTORIES:
        raise DuplicateTaskError(task_id)
    _FACTORIES[task_id] = factory


def unregister(task_id: str) -> None:
    """Remove a task (used to roll back a plugin that failed half-way); unknown ids are ignored."""
    _FACTORIES.pop(task_id, None)
    _CACHE.pop(task_id, None)


def factory(task_id: str) -> Callable[[], Task]:
    """The factory registered as `task_id` (unknown id: TaskError)."""
    if task_id not in _FACTORIES:
        raise TaskError(f"unknown task {task_id!r}")
    return _FACTORIES[task_id]


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
