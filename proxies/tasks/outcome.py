"""What a stacked sweep returns, and the names shared by every task: fidelities, splits, pruning rungs."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Fidelity levels, cheap -> expensive. Only the number of training steps differs.
FIDELITIES = ("tiny", "small", "full")

#: Held-out splits a task's metric can be computed on (``split=``); "val" is the default.
SPLITS = ("val", "test")

#: Torch intra-op threads during a sweep: an integer, or "default" (unset: 1; see sweep_threads).
THREADS_ENV = "OPTFORGE_TORCH_THREADS"


@dataclass(frozen=True)
class Rung:
    """A successive-halving rung: after ``frac`` of the steps, only the best ``keep`` grid points
    go on (their copies, all seeds); the others are dropped from the stacked run."""
    frac: float
    keep: int


@dataclass
class SweepOutcome:
    """Result of one vectorized sweep: arrays indexed [grid point, seed(, curve point)].

    A grid point is a learning rate (``lrs[i]``), or an (lr, wd) pair when the sweep was
    given ``wds`` (``wds[i]``; None: every copy used the task's own ``weight_decay``).
    """
    task: str
    lrs: list[float]
    seeds: list[int]
    final: np.ndarray          # [n_lr, n_seed] final held-out metric, nan where diverged or pruned
    diverged: np.ndarray       # [n_lr, n_seed] bool
    curves: np.ndarray         # [n_lr, n_seed, n_points] held-out metric, nan after divergence/pruning
    curve_steps: list[int]     # optimizer steps done at each curve point (0 = initial model)
    seconds: float
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    fidelity: str = ""
    steps_run: int = 0         # optimizer steps done (< the fidelity's steps if all diverged)
    #: the held-out split the metric and curves were computed on ("val" or "test")
    split: str = "val"
    #: other held-out metrics (e.g. "val_acc") as [n_lr, n_seed, n_points] curves
    extra_curves: dict[str, np.ndarray] = field(default_factory=dict)
    #: step at which each copy diverged, -1 if it did not: [n_lr, n_seed]
    diverged_at: np.ndarray | None = None
    #: per-point weight decay (None: the task's own, for every copy)
    wds: list[float] | None = None
    #: [n_lr, n_seed] bool: dropped by a successive-halving rung (None: no rungs)
    pruned: np.ndarray | None = None
    #: optimizer steps summed over copies (the run's training cost in copy-steps)
    copy_steps: int = 0
