"""The generic stacked task: any ``torch.nn.Module`` factory, a dataset and a loss.

``ModuleTask`` trains K copies of one module at once with ``torch.func``: the
copies' parameters are the stacked ``[K, *shape]`` views the training loop hands
over (what ``torch.func.stack_module_state`` would build), and the forward pass is
``torch.func.vmap(functional_call)`` over them, so a new family is a model
factory, a data function and a loss, not a hand-written batched model. Dropout
runs with ``randomness="different"`` (per-copy masks) from a seeded generator.

Data: ``data()`` returns ``{"train": (x, y), "val": (x, y), "test": (x, y)}``,
built on first use. With ``batch_size`` each copy draws minibatches in its own
seeded epoch order (``stacked_order``); ``batch_size=None`` trains full-batch.
The held-out metrics are computed on the whole split in one batch.

Buffers are passed to every copy unchanged, so a module that *updates* its
buffers cannot be stacked: BatchNorm must be built with
``track_running_stats=False`` (batch statistics in training and evaluation; on
the held-out split, statistics of the whole split). Dropout masks come from one
seeded stream per run, so with dropout a copy's result depends on which other
copies share its run (without dropout it does not).

Speed: the same MLP as the hand-written ``digits_mlp`` (same data, batch,
schedule, steps), 9 lrs x 2 seeds = 18 copies, AdamW, costs 1.24x the
hand-written task's CPU time at tiny and 1.51x at small
(``bench/proxy_sweep.py --generic``, 2-core CPU container, 1 torch thread,
2026-12-01 10:20 UTC, load average ~8 from other work; best of 3). The
overhead is vmap's per-op dispatch; it matters most for the cheapest models.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from .core import StackedTask
from .errors import TaskDefinitionError
from .ops import seed_of, stacked_order

Split = tuple[torch.Tensor, torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class _Ctx:
    order: torch.Tensor | None     # [steps, K, batch] example indices (None: full batch)
    rng_seed: int                  # dropout stream of this run


def _has_dropout(m: nn.Module) -> bool:
    return any(isinstance(x, nn.modules.dropout._DropoutNd) for x in m.modules())


class ModuleTask(StackedTask):
    """K stacked copies of ``model()`` trained on ``data()`` under ``loss`` (see the module docstring).

    ``loss(output, y)`` and each ``metrics[name](output, y)`` act on ONE copy's output and
    return a scalar; ``metric`` names the selection metric (``val_<metric>`` on val).
    ``steps`` gives the budget per fidelity ("tiny", "small", "full"); ``metric_floor`` the loss at
    which the task counts as solved (``StackedTask.metric_floor``).
    """

    def __init__(self, name: str, model: Callable[[], nn.Module], data: Callable[[], Mapping[str, Split]],
                 loss: Loss, *, steps: Mapping[str, int], batch_size: int | None,
                 metrics: Mapping[str, Loss] | None = None, metric: str = "loss",
                 higher_is_better: bool = False, weight_decay: float = 0.0, schedule: str = "constant",
                 blowup: float = 10.0, salt: int = 0, description: str = "", version: str = "1",
                 metric_floor: float = 0.0):
        self.name = name
        self.description = description
        self._model, self._data_fn, self.loss_fn = model, data, loss
        self.metric_fns: dict[str, Loss] = dict(metrics or {"loss": loss})
        if metric not in self.metric_fns:
            raise TaskDefinitionError(f"task {name!r}: the selection metric {metric!r} is not among its "
                                      f"metrics {sorted(self.metric_fns)}")
        self.metric_name = f"val_{metric}"
        self.higher_is_better = higher_is_better
        self.steps = dict(steps)
        self.batch_size = batch_size
        self.weight_decay = float(weight_decay)
        self.schedule = schedule
        self.blowup = blowup
        self.salt = salt
        self.version = version
        self.metric_floor = float(metric_floor)
        self._data: Mapping[str, Split] | None = None
        self._template: nn.Module | None = None

    # -- pieces built on first use ------------------------------------------
    @property
    def data(self) -> Mapping[str, Split]:
        if self._data is None:
            d = self._data_fn()
            missing = [s for s in ("train", "val", "test") if s not in d]
            if missing:
                raise TaskDefinitionError(f"task {self.name!r}: data() must return the splits train, val "
                                          f"and test as (x, y) pairs; missing {missing}")
            self._data = d
        return self._data

    def _build(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of(seed, self.salt))
            m = self._model()
        if not isinstance(m, nn.Module):
            raise TaskDefinitionError(f"task {self.name!r}: model() returned {type(m).__name__}, "
                                      "not a torch.nn.Module")
        for sub in m.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
                raise TaskDefinitionError(
                    f"task {self.name!r}: {type(sub).__name__} keeps running statistics (buffers updated "
                    "in place), which stacked copies cannot share; build it with track_running_stats=False")
        return m

    @property
    def template(self) -> nn.Module:
        """The module ``functional_call`` runs (its own parameter values are never used); in train
        mode except inside ``evaluate``."""
        if self._template is None:
            self._template = self._build(0).train()
            self._buffers = {k: v.detach() for k, v in self._template.named_buffers()}
            self._randomness = "different" if _has_dropout(self._template) else "error"
        return self._template

    # -- the StackedTask contract ---------------------------------------------
    def init(self, seed: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().to(torch.float32).clone() for k, v in self._build(seed).named_parameters()}

    def prepare(self, copy_seeds, steps):
        n = len(self.data["train"][1])
        order = None if self.batch_size is None else stacked_order(copy_seeds, n, self.batch_size, steps,
                                                                   self.salt)
        rng = hash((tuple(copy_seeds), self.salt)) % (2**63 - 1)
        return _Ctx(order, rng)

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor, batched: bool) -> torch.Tensor:
        m = self.template
        fn = lambda params, xb: functional_call(m, (params, self._buffers), (xb,))  # noqa: E731
        return vmap(fn, in_dims=(0, 0 if batched else None), randomness=self._randomness)(p, x)

    def loss(self, p, ctx, t):
        x, y = self.data["train"]
        self.template  # noqa: B018 - built on first use: sets _buffers and _randomness, read below
        if ctx.order is not None:
            idx = ctx.order[t]                              # [K, batch]
            x, y = x[idx], y[idx]
        batched = ctx.order is not None
        if self._randomness == "different":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((ctx.rng_seed + 7919 * t) % (2**63 - 1))
                out = self._forward(p, x, batched)
        else:
            out = self._forward(p, x, batched)
        return vmap(self.loss_fn, in_dims=(0, 0 if batched else None))(out, y)

    def evaluate(self, p, ctx, split="val"):
        x, y = self.data[split]
        self.template.eval()
        try:
            out = self._forward(p, x, batched=False)
        finally:
            self.template.train()
        return {f"{split}_{k}": vmap(f, in_dims=(0, None))(out, y) for k, f in self.metric_fns.items()}


__all__ = ["ModuleTask"]
