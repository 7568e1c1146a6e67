"""Typed errors of the task layer: a task that cannot be found, loaded or built says which and why."""
from __future__ import annotations


class TaskLoadError(ValueError):
    """A task name or ``module:factory`` spec that does not give a usable task; the message names
    the spec and what to fix."""

    def __init__(self, spec: str, why: str):
        self.spec = spec
        self.why = why
        super().__init__(f"task {spec!r}: {why}")


class UnknownTaskError(TaskLoadError, KeyError):
    """A plain task name that is not registered (also a KeyError, as ``get_task`` always raised)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class TaskDefinitionError(ValueError):
    """A task built from parts that cannot work together (e.g. a module that updates buffers)."""


class TaskOverlapError(ValueError):
    """Task sets that must be disjoint (search / validation / transfer) share a task or a family."""
