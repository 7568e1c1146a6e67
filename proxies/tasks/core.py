"""Stacked training: K copies of a small model trained at once under one DSL update rule.

A learning-rate sweep (and several seeds) of one candidate rule is a single
vectorized run. Every parameter is stored with a leading copy dimension ``K``
(copy ``k`` uses ``lrs[k // n_seed]`` and ``seeds[k % n_seed]``); models are
written functionally with batched ops, so one forward/backward serves all
copies. The copies' losses are summed before ``backward``: since no op mixes
copies, ``d(sum_j L_j)/d theta_k = dL_k/d theta_k`` and every copy gets its own
gradient. The rule is then applied through ``dsl.run_rule(..., batch_dims=1)``
with ``lr`` a per-copy tensor, on a few stacked blocks rather than per tensor:

* elementwise rules (no reduction or matrix primitive): every parameter of a copy
  flattened into one ``[K, P]`` block, one rule call per step;
* other rules: parameters of one shape kept in one ``[n*K, *shape]`` block with
  ``lr`` repeated ``n`` times. Reductions and matrix primitives act per leading
  index, i.e. per (tensor, copy), so the update is exactly the per-tensor one.

Held-out splits: every task reports its metric on the validation split by default;
``split="test"`` computes the metric (and the curve) on a third, held-out test split
instead, disjoint from training and validation data (each task's docstring gives the
sizes; the noisy objectives have no data, so their test metric is the objective
itself). A search selects on validation scores and must never see the test split:
it exists to report the selected rules honestly, after selection. Metric names
follow the split: ``val_loss`` on val is ``test_loss`` on test (see ``metric_key``).

Divergence: a copy whose training loss is not finite or exceeds
``blowup * initial loss``, whose parameters become non-finite (a per-copy sum
overflowing float32 counts), or whose held-out metric is not finite, is marked
diverged and frozen at zero parameters and zero state (zeros keep its share of
the shared computation finite, so it cannot poison the others). Its curve is
NaN from then on. When every copy has diverged the run stops early.

Code: the training loop (with its weight-decay grid and successive-halving
rungs) is ``proxies.tasks.train``, the stacked ops for hand-written tasks
``proxies.tasks.ops``, and the generic ``nn.Module`` task ``proxies.tasks.module``.

Determinism: all randomness comes from explicit seeded generators; results are
identical run to run and (measured) for 1 or 2 torch threads. A copy's curve in
a K-copy run equals its curve run alone (bit-for-bit on the network tasks here,
~1e-6 relative on the quadratic, whose [K, 50] matmul tiles differently).
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dsl import Program

# re-exported: the stacked building blocks lived here before proxies.tasks.ops, the loop before .train
from .ops import accuracy, cross_entropy, epoch_order, gen, layer_norm, linear, normal, stacked_order  # noqa: F401
from .outcome import FIDELITIES, SPLITS, THREADS_ENV, Rung, SweepOutcome  # noqa: F401
from .train import TorchThreads, curve_steps, run_sweep, sweep_threads  # noqa: F401


@runtime_checkable
class RuleTask(Protocol):
    """What evaluators/ relies on (see CONTEXT contract)."""
    name: str
    metric_name: str
    higher_is_better: bool
    steps: dict[str, int]
    weight_decay: float

    def sweep(self, program: Program, lrs: Sequence[float], seeds: Sequence[int], fidelity: str,
              hyper: dict[str, float] | None = None, split: str = "val",
              wds: Sequence[float] | None = None, rungs: Sequence[Rung] | None = None) -> SweepOutcome: ...


class StackedTask(abc.ABC):
    """Base class of every rule task: a functional model over stacked [K, ...] parameters.

    Subclasses define ``init`` (one copy's parameters for a seed), ``prepare``
    (the per-run data order of each copy), ``loss`` (per-copy training loss at a
    step) and ``evaluate`` (per-copy held-out metrics on the "val" or "test" split,
    keyed by ``metric_key``-style names). ``run_sweep`` does the rest.
    """
    name: str = ""
    description: str = ""
    metric_name: str = "val_loss"
    higher_is_better: bool = False
    steps: dict[str, int] = {}
    weight_decay: float = 0.0
    #: a copy whose monitored training loss exceeds blowup * its initial loss is diverged
    blowup: float = 10.0
    #: the loss at which the task counts as solved (0 = never): scores floor losses here, so two rules
    #: that both solve an easy task tie instead of a 0.01-vs-0.001-nats difference deciding a verdict
    metric_floor: float = 0.0
    #: curve points (including the initial model and the final one)
    n_points: int = 11
    #: lr multiplier over training: "constant", "warmup_constant" or "warmup_cosine"
    schedule: str = "constant"
    warmup_frac: float = 0.05
    final_lr_frac: float = 0.1  # warmup_cosine decays to this fraction of the peak

    # -- to implement -------------------------------------------------------
    @abc.abstractmethod
    def init(self, seed: int) -> dict[str, torch.Tensor]:
        """One copy's initial float32 parameters (unstacked), a pure function of ``seed``."""

    def prepare(self, copy_seeds: list[int], steps: int) -> Any:
        """Per-run context, e.g. each copy's minibatch order (copy k follows copy_seeds[k])."""
        return None

    @abc.abstractmethod
    def loss(self, p: dict[str, torch.Tensor], ctx: Any, t: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """[K] training loss at step t (0-based) to differentiate, or (loss, monitored loss)."""

    @abc.abstractmethod
    def evaluate(self, p: dict[str, torch.Tensor], ctx: Any, split: str = "val") -> dict[str, torch.Tensor]:
        """[K] held-out metrics on ``split`` ("val" or "test"), keyed by name; must contain
        ``metric_key(split)``. Only the asked split is computed: a val run never touches test data."""

    # -- the contract ----------------------------------------------------------
    def sweep(self, program: Program | str, lrs: Sequence[float], seeds: Sequence[int], fidelity: str,
              hyper: dict[str, float] | None = None, split: str = "val",
              wds: Sequence[float] | None = None, rungs: Sequence[Rung] | None = None) -> SweepOutcome:
        """One vectorized training run of len(lrs)*len(seeds) copies; see the module docstring.

        ``split`` picks the held-out data of the metric and curves: "val" (default) or "test".
        ``wds`` (one per lr) tunes weight decay in the same run; ``rungs`` prune the grid by
        successive halving (see ``proxies.tasks.train``).
        """
        return run_sweep(self, program, lrs, seeds, fidelity, hyper, split, wds, rungs)

    def metric_key(self, split: str = "val") -> str:
        """Name of the metric on ``split``: ``metric_name`` on val; its ``val_`` prefix becomes
        ``test_`` on test (a metric without that prefix, e.g. an objective, keeps its name)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if split == "val" or not self.metric_name.startswith("val_"):
            return self.metric_name
        return split + self.metric_name[len("val"):]

    def lr_factors(self, steps: int) -> np.ndarray:
        """Multiplier of the swept lr at each step (float64 [steps])."""
        t = np.arange(steps, dtype=np.float64)
        if self.schedule == "constant":
            return np.ones(steps)
        warm = max(1, int(round(self.warmup_frac * steps)))
        f = np.minimum(1.0, (t + 1) / warm)
        if self.schedule == "warmup_constant":
            return f
        if self.schedule == "warmup_cosine":
            frac = np.clip((t - warm) / max(1, steps - warm), 0.0, 1.0)
            cos = self.final_lr_frac + (1 - self.final_lr_frac) * 0.5 * (1 + np.cos(np.pi * frac))
            return np.where(t < warm, f, cos)
        raise ValueError(f"task {self.name}: unknown schedule {self.schedule!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} steps={self.steps}>"
