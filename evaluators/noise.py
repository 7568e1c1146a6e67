"""Noise floors: how far the baseline (AdamW) scores from *itself* on a task, by chance alone.

A rule "wins a task beyond noise" only when its task score exceeds what AdamW scores against
AdamW under the same tuning protocol, fidelity, split and number of seeds. Measurement, per task:

1. one vectorized sweep of the baseline over ``2 K n`` fresh seeds (seeds are copies in the stacked
   run, so this is one training run; the seeds are disjoint from any search or verify seed);
2. the seeds are cut into ``2 K`` disjoint sets of ``n``; each set is *tuned on its own* (the grid
   point with the best seed-mean metric among the points every one of its seeds finished), as a
   separate evaluation with those seeds would be;
3. set ``2k`` plays the rule and set ``2k+1`` the baseline: ``z_k = mean_s clip(log(b_s / a_s))``
   (pairs by position: different init and data order) is one draw of the null task score;
4. the floor is ``2 * sqrt(mean_k z_k^2)``: twice the root-mean-square null score (its mean is 0 by
   symmetry), about a one-sided 97.5% bound under normality.

With successive halving the pruning in step 1 ranks points by the mean over all ``2 K n`` seeds,
so step 2 tunes among the survivors: the tuning noise of the halving rung itself is understated.
Floors are cached in the evaluator's cache (namespace ``noise``), keyed by everything above.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .cache import EvalCache
from .rule_config import RuleEvalConfig
from .scoring import floored_log_ratios
from .sweeps import SweepJob, SweepSummary, run_sweep_job

#: first seed of noise measurements (far from the search's 0, 1 and verify's next few)
NOISE_SEED_BASE = 10_000
#: a floor above this is larger than the effects that matter (a 5% lower loss)
NOISY_ABOVE = 0.05
#: the floor is this many root-mean-square null scores
FLOOR_Z = 2.0


class NoiseError(RuntimeError):
    """The baseline's sweep failed on a task, so its noise floor cannot be measured."""


@dataclass
class NoiseFloor:
    task: str
    fidelity: str
    n_seeds: int          # seeds per side of each replicate (= seeds of the scores it is a floor for)
    replicates: list[float]   # null task scores z_k (AdamW vs AdamW)
    per_seed_sd: float    # standard deviation of the pooled per-seed null log ratios
    floor: float          # FLOOR_Z * rms(replicates)
    split: str = "val"
    baseline: str = "adamw"

    @property
    def noisy(self) -> bool:
        return self.floor > NOISY_ABOVE

    def to_json(self) -> dict:
        return asdict(self) | {"noisy": self.noisy}

    @classmethod
    def from_json(cls, d: dict) -> "NoiseFloor":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def noise_seeds(n_seeds: int, replicates: int) -> list[int]:
    return list(range(NOISE_SEED_BASE, NOISE_SEED_BASE + 2 * n_seeds * replicates))


def tuned_metrics(s: SweepSummary, cols: Sequence[int]) -> np.ndarray | None:
    """Per-seed metrics at the grid point tuned on the seed columns ``cols`` only (None: no point
    finished on all of them). Same rule as ``sweeps.summarize``: best seed-mean among usable points."""
    best, best_mean = None, None
    for i, row in enumerate(s.final):
        vals = [row[c] for c in cols]
        if any(v is None for v in vals):
            continue
        m = float(np.mean(vals))
        if best_mean is None or (m > best_mean if s.higher_is_better else m < best_mean):
            best, best_mean = i, m
    return None if best is None else np.array([s.final[best][c] for c in cols], dtype=float)


def floor_from_sweep(s: SweepSummary, fidelity: str, n_seeds: int, replicates: int, clip: float,
                     split: str = "val", baseline: str = "adamw") -> NoiseFloor:
    """Steps 2-4 of the module docstring on one sweep over ``2 * replicates * n_seeds`` seeds."""
    if s.failed:
        raise NoiseError(f"the {baseline} sweep failed on task {s.task}: {s.error or 'diverged everywhere'}")
    zs, pooled = [], []
    for k in range(replicates):
        a = tuned_metrics(s, range(2 * k * n_seeds, (2 * k + 1) * n_seeds))
        b = tuned_metrics(s, range((2 * k + 1) * n_seeds, (2 * k + 2) * n_seeds))
        if a is None or b is None:
            continue
        r = np.clip(floored_log_ratios(a, b, s.higher_is_better, s.metric_floor), -clip, clip)
        zs.append(float(r.mean()))
        pooled += [float(x) for x in r]
    if not zs:
        raise NoiseError(f"task {s.task}: no seed set of the {baseline} sweep finished a grid point")
    rms = math.sqrt(float(np.mean(np.square(zs))))
    sd = float(np.std(pooled, ddof=1)) if len(pooled) > 1 else 0.0
    return NoiseFloor(task=s.task, fidelity=fidelity, n_seeds=n_seeds, replicates=zs, per_seed_sd=sd,
                      floor=FLOOR_Z * rms, split=split, baseline=baseline)


def _key(cfg: RuleEvalConfig, task: str, fidelity: str, n_seeds: int, replicates: int) -> str:
    c = cfg.model_copy(update={"tasks": [task], "seeds": noise_seeds(n_seeds, replicates)})
    payload = {"config": c.result_hash(), "fidelity": fidelity, "n": n_seeds, "k": replicates, "z": FLOOR_Z,
               "clip": cfg.clip, "v": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def default_cache_path() -> Path:
    """Where noise floors persist by default: ``$OPTFORGE_CACHE`` or ``~/.cache/optforge/eval_cache.sqlite``."""
    env = os.environ.get("OPTFORGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "optforge" / "eval_cache.sqlite"


def noise_floors(ev, fidelity: str, tasks: Sequence[str] | None = None, *, n_seeds: int | None = None,
                 replicates: int = 4, cache: EvalCache | None = None) -> dict[str, NoiseFloor]:
    """The noise floor of each task under ``ev`` (a ``RuleEvaluator``)'s protocol, cached in ``cache``
    (default: the evaluator's); missing ones are measured in one executor batch. ``n_seeds`` defaults
    to the evaluator's seed count. Raises :class:`NoiseError` for a task whose baseline sweep failed."""
    cfg: RuleEvalConfig = ev.config
    cache = cache if cache is not None else ev.cache
    n = int(n_seeds or len(cfg.seeds))
    if n < 1 or replicates < 1:
        raise ValueError(f"need n_seeds >= 1 and replicates >= 1, got {n} and {replicates}")
    tasks = list(tasks or cfg.tasks)
    out: dict[str, NoiseFloor] = {}
    for t in tasks:
        blob = cache.get_blob("noise", _key(cfg, t, fidelity, n, replicates))
        if blob is not None:
            out[t] = NoiseFloor.from_json(blob)
    missing = [t for t in tasks if t not in out]
    if missing:
        wd = cfg.wd_grid
        jobs = [SweepJob(ev.baseline_source, (t,), tuple(cfg.lr_grid.lrs()), tuple(noise_seeds(n, replicates)),
                         fidelity, False, cfg.torch_threads, cfg.split,
                         wd_grid=None if wd is None else tuple(wd.values), wd_relative=bool(wd and wd.relative),
                         rungs=() if cfg.halving is None else tuple(cfg.halving.rungs)) for t in missing]
        outcomes = ev.executor.map(run_sweep_job, jobs, [cfg.baseline_timeout_s] * len(jobs))
        for t, o in zip(missing, outcomes):
            if not o.ok:
                raise NoiseError(f"the {cfg.baseline} sweep for task {t}'s noise floor failed: {o.status}: {o.reason}")
            f = floor_from_sweep(o.value[0].model_copy(update={"task": t}), fidelity, n, replicates, cfg.clip,
                                 cfg.split, cfg.baseline)
            cache.put_blob("noise", _key(cfg, t, fidelity, n, replicates), f.to_json())
            out[t] = f
    return {t: out[t] for t in tasks}


__all__ = ["NoiseFloor", "NoiseError", "noise_floors", "default_cache_path", "floor_from_sweep", "tuned_metrics",
           "noise_seeds", "NOISE_SEED_BASE", "NOISY_ABOVE", "FLOOR_Z"]
