"""Picklable, deliberately misbehaving work functions for testing executors with REAL failures.

They live in the package (not in a test module) so that worker processes can
import them by name without importing pytest or the tests.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch


def square(x: float) -> float:
    """A well-behaved item."""
    return x * x


def pid_of_worker(_: object = None) -> int:
    """The pid of the process that runs the item."""
    return os.getpid()


def sleep_for(item: tuple[float, str | None]) -> int:
    """Write this process's pid to ``path`` (if given), then sleep ``seconds``; returns the pid."""
    seconds, path = item
    if path:
        Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def hard_exit(code: int) -> None:
    """Die without cleanup or exception, as a crashing native extension would."""
    os._exit(code)


def raise_value_error(msg: str) -> None:
    raise ValueError(msg)


def return_unpicklable(_: object = None):
    """A result that cannot cross a process boundary."""
    return lambda: None


def kill_self(_: object = None) -> None:
    """Die by SIGKILL, as a worker does when the out-of-memory killer picks it."""
    os.kill(os.getpid(), signal.SIGKILL)


def torch_threads(_: object = None) -> int:
    """torch's intra-op thread count in the process that runs the item."""
    return torch.get_num_threads()


def behave(item: tuple[str, object]):
    """Dispatch on ``(action, arg)`` so one batch can mix every kind of failure."""
    action, arg = item
    return {"square": square, "sleep": sleep_for, "exit": hard_exit, "sigkill": kill_self,
            "raise": raise_value_error, "unpicklable": return_unpicklable}[action](arg)
