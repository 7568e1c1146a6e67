"""How rules are scored: the lr grid, the evaluator's config (and its result hash), rule identity.

Fields that change scores enter :meth:`RuleEvalConfig.result_hash`, part of every
cache key; where and how fast evaluations run (executor, workers, timeouts,
cache_dir) do not.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import dsl
import proxies


def _default_suite() -> list[str]:
    return list(proxies.DEFAULT_SUITE)


def _nonempty_distinct(v: list, empty: str, repeated: str) -> list:
    """``v`` itself; ValueError(``empty``) when it is empty, ValueError(``repeated``) when a value repeats."""
    if not v:
        raise ValueError(empty)
    if len(set(v)) != len(v):
        raise ValueError(repeated)
    return v


class LrGrid(BaseModel):
    """A log-spaced learning-rate grid: ``points`` values spanning ``width`` decades around ``center``.

    The default, 9 points from 1e-4 to 1 (half-decade steps), is ``center=1e-2, width=4``. It is
    that wide because the tuned optimum moves with the rule and the fidelity: measured at tiny/small,
    tuned AdamW sits at 1e-2..3e-1 and tuned SGD-momentum at 1e-3..3e-1 across the default suite, so a
    grid ending at 1e-1 left both baselines at its edge (an unfair, under-tuned comparison).
    ``values`` gives an explicit grid instead.
    """
    model_config = ConfigDict(extra="forbid")

    center: float = Field(default=1e-2, gt=0)
    width: float = Field(default=4.0, ge=0, description="decades spanned by the grid")
    points: int = Field(default=9, ge=1, le=64)
    values: list[float] | None = None

    @field_validator("values")
    @classmethod
    def _check_values(cls, v):
        if v is not None:
            if not v:
                raise ValueError("an explicit lr grid needs at least one value")
            if any(not (x > 0 and math.isfinite(x)) for x in v):
                raise ValueError(f"learning rates must be positive and finite, got {v}")
            if len(set(v)) != len(v):
                raise ValueError(f"learning rates must be distinct, got {v}")
            v = sorted(float(x) for x in v)
        return v

    def lrs(self) -> list[float]:
        """The grid, ascending."""
        if self.values is not None:
            return list(self.values)
        if self.points == 1:
            return [float(self.center)]
        c = math.log10(self.center)
        return [float(x) for x in np.logspace(c - self.width / 2, c + self.width / 2, self.points)]

    @classmethod
    def from_range(cls, lo: float, hi: float, points: int) -> "LrGrid":
        """The grid of ``points`` log-spaced values from ``lo`` to ``hi``."""
        if not (0 < lo <= hi):
            raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
        return cls(center=math.sqrt(lo * hi), width=math.log10(hi / lo), points=points)


def wd_axis(values: list[float] | tuple[float, ...], relative: bool, task_wd: float) -> list[float]:
    """The weight decays a wd grid of ``values`` tunes on a task whose own weight decay is ``task_wd``:
    ``values`` as given, or with ``relative`` their products with ``task_wd`` (distinct, ascending)."""
    if not relative:
        return list(values)
    return sorted({float(x) * float(task_wd) for x in values})


class WdGrid(BaseModel):
    """Weight decays tuned next to the learning rate: the tuning grid is lr_grid x wd_grid, every
    point one copy (per seed) of the same vectorized run, for the candidate and the baseline alike.

    ``values`` are absolute weight decays, or with ``relative`` factors of each task's own
    ``weight_decay`` (duplicates dropped: a task whose own wd is 0 then tunes only wd = 0).
    """
    model_config = ConfigDict(extra="forbid")

    values: list[float] = Field(default_factory=lambda: [0.0, 1e-3, 1e-2, 1e-1, 1.0])
    relative: bool = False

    @field_validator("values")
    @classmethod
    def _check_values(cls, v):
        if not v:
            raise ValueError("a wd grid needs at least one value")
        if any(not (x >= 0 and math.isfinite(x)) for x in v):
            raise ValueError(f"weight decays must be finite and >= 0, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"weight decays must be distinct, got {v}")
        return sorted(float(x) for x in v)

    def wds(self, task_wd: float) -> list[float]:
        """The grid for a task whose own weight decay is ``task_wd`` (ascending)."""
        return wd_axis(self.values, self.relative, task_wd)


class SuccessiveHalving(BaseModel):
    """Successive halving over the tuning grid: every grid point trains for the first
    ``rungs[0][0]`` of the steps; then only the best ``rungs[0][1]`` points (by seed-mean held-out
    metric) go on, and so on; the others' copies are dropped from the stacked run. The default,
    one rung keeping 5 points at 30% of the steps, ranked 43 rules like the full 9 x 5 lr x wd grid
    (Spearman 0.93, same top 5) at 38% of its compute (bench/results/eval.md); earlier or harsher
    rungs were cheaper but ranked worse."""
    model_config = ConfigDict(extra="forbid")

    rungs: list[tuple[float, int]] = Field(default_factory=lambda: [(0.3, 5)],
                                           description="(fraction of the steps, grid points kept)")

    @field_validator("rungs")
    @classmethod
    def _check_rungs(cls, v):
        if not v:
            raise ValueError("successive halving needs at least one rung")
        for i, (frac, keep) in enumerate(v):
            if not 0 < frac < 1 or keep < 1:
                raise ValueError(f"rung {i} = ({frac}, {keep}): need 0 < fraction < 1 and keep >= 1")
            if i and (frac <= v[i - 1][0] or keep > v[i - 1][1]):
                raise ValueError(f"rungs need increasing fractions and non-increasing keep counts, got {v}")
        return [(float(f), int(k)) for f, k in v]


#: Tuning protocols measured by ``bench/eval_throughput.py --tuning`` (bench/results/eval.md), as
#: RuleEvalConfig fields: ``RuleEvalConfig(**TUNING_PRESETS["budget"], tasks=...)``. Rank agreement
#: (Spearman) with the full 9 lr x 5 wd grid over 43 rules, and compute relative to today's default
#: lr-only sweep (9 lrs, each task's fixed wd; Spearman 0.79 itself):
#: "budget" 0.84 at 0.75x (5 lrs x 3 wds, SH keeping 3 of 15 points at 30%, same top rule);
#: "thorough" 0.93 at 2.0x (9 lrs x 5 wds, SH keeping 5 of 45 at 30%, same top 5). "fine" is "budget"
#: with half-decade lr steps (9 lrs x 3 wds, SH keeping 3 of 27 at 30%: 27 short runs where "budget"
#: has 15, the same 3 long ones): where a search tuned on decades, verification on it shows whether
#: a win came from where the points fell.
TUNING_PRESETS: dict[str, dict] = {
    "budget": {"lr_grid": {"points": 5}, "wd_grid": {"values": [0.0, 1e-2, 1e-1]},
               "halving": {"rungs": [(0.3, 3)]}},
    "fine": {"lr_grid": {"points": 9}, "wd_grid": {"values": [0.0, 1e-2, 1e-1]},
             "halving": {"rungs": [(0.3, 3)]}},
    "thorough": {"wd_grid": {"values": [0.0, 1e-3, 1e-2, 1e-1, 1.0]}, "halving": {"rungs": [(0.3, 5)]}},
}


def with_tuning_preset(d: dict, name: str) -> dict:
    """``d`` (RuleEvalConfig fields) tuned by preset ``name``: its lr grid, wd grid and halving replaced
    by the preset's (one the preset leaves out takes its default). ValueError for an unknown name."""
    if name not in TUNING_PRESETS:
        raise ValueError(f"tuning {name!r}: not a tuning preset; choose one of {sorted(TUNING_PRESETS)}")
    out = {k: v for k, v in d.items() if k not in ("lr_grid", "wd_grid", "halving")}
    out.update(copy.deepcopy(TUNING_PRESETS[name]))   # the preset's dicts are shared: never hand them out
    return out


class RuleEvalConfig(BaseModel):
    """How rules are scored. Fields that change scores enter :meth:`result_hash` (the cache key);
    where and how fast they run (executor, workers, timeout, cache_dir) do not."""
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=_default_suite, description="proxy task names")
    lr_grid: LrGrid = Field(default_factory=LrGrid)
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    baseline: str = Field(default="adamw", description="the reference rule: a dsl.library name or DSL source")
    score_clip: float = Field(default=5.0, gt=0, description="task scores are clipped to +-score_clip")
    timeout_s: float | None = Field(default=600.0, gt=0, description="time limit of one candidate's work "
                                    "unit (all its tasks, or one task when work is split per task)")
    baseline_timeout_s: float | None = Field(default=None, gt=0, description="time limit of one "
                                             "baseline sweep (None: no limit; the baseline is trusted)")
    torch_threads: int = Field(default=1, ge=1, le=256, description="torch intra-op threads of one "
                               "evaluation. Float sums depend on it, so it is pinned (and hashed) to keep "
                               "results identical whichever executor runs them")
    executor: Literal["inprocess", "pool", "ray"] = "pool"
    workers: int | None = Field(default=None, ge=1, description="pool size (default: cores // "
                                "torch_threads)")
    ray_address: str | None = Field(default=None, description="Ray cluster address; None: local Ray")
    cache_dir: str | None = Field(default=None, description="directory (or .sqlite file) of the "
                                  "persistent result cache; None: memory only")
    split: Literal["val", "test"] = Field(default="val", description="held-out split the tasks' metric "
                                          "is computed on: 'val' (what a search selects on) or 'test' "
                                          "(reporting selected rules only; a search must never see it)")
    wd_grid: WdGrid | None = Field(default=None, description="tune weight decay too (lr x wd grid, "
                                   "one vectorized run); None: each task's own fixed weight_decay")
    halving: SuccessiveHalving | None = Field(default=None, description="successive halving over the "
                                              "tuning grid; None: every grid point trains all steps")
    task_clip: float | None = Field(default=None, gt=0, description="clip each task's log ratio to "
                                    "+-task_clip before the mean, so no single task dominates (e.g. 0.5); "
                                    "None: only score_clip")

    @field_validator("tasks")
    @classmethod
    def _check_tasks(cls, v):
        return _nonempty_distinct(v, "at least one task is needed", f"tasks are listed twice: {v}")

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v):
        return _nonempty_distinct(v, "at least one seed is needed", f"seeds must be distinct, got {v}")

    @model_validator(mode="after")
    def _check_known_tasks(self):
        known = list(proxies.list_tasks())
        unknown = [t for t in self.tasks if t not in known and not proxies.is_task_spec(t)]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known tasks: {', '.join(known)} (or name your "
                             "own as 'package.module:factory')")
        for t in self.tasks:
            if proxies.is_task_spec(t):
                proxies.resolve_task(t)   # TaskLoadError (a ValueError) says what is wrong with it
        return self

    @property
    def clip(self) -> float:
        """The clip of one task's score: ``task_clip`` when set (never above ``score_clip``)."""
        return self.score_clip if self.task_clip is None else min(self.score_clip, self.task_clip)

    def result_hash(self) -> str:
        """Hash of everything that changes a score (part of every cache key)."""
        task_meta = {}
        for name in self.tasks:
            t = proxies.get_task(name)
            task_meta[name] = {"steps": dict(getattr(t, "steps", {})),
                               "wd": float(getattr(t, "weight_decay", 0.0)),
                               "metric": getattr(t, "metric_name", ""),
                               "version": str(getattr(t, "version", ""))}
            if getattr(t, "metric_floor", 0.0):     # only when set: other tasks keep their cache keys
                task_meta[name]["floor"] = float(t.metric_floor)
        payload = {"tasks": self.tasks, "lrs": [float(f"{x:.12g}") for x in self.lr_grid.lrs()],
                   "seeds": self.seeds, "baseline": rule_key(baseline_source(self.baseline)),
                   "clip": self.score_clip, "threads": self.torch_threads, "task_meta": task_meta,
                   "scoring": 1, "split": self.split}
        # new tuning and scoring options enter the hash only when set: default configs keep their keys
        if self.wd_grid is not None:
            payload["wd_grid"] = self.wd_grid.model_dump()
        if self.halving is not None:
            payload["halving"] = self.halving.model_dump()
        if self.task_clip is not None:
            payload["task_clip"] = self.task_clip
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]



def baseline_source(name_or_source: str) -> str:
    """DSL source of the reference rule: a ``dsl.library`` rule name, or DSL source itself."""
    if "(" in name_or_source:
        return dsl.parse(name_or_source).source()
    return library_source(name_or_source)


def library_source(name: str) -> str:
    """Canonical source of a library rule (``dsl.get_rule``; KeyError lists the known names)."""
    return dsl.get_rule(name).source()


def rule_key(source_or_program: str | dsl.Program) -> str:
    """The cache key of a rule: ``dsl.fingerprint`` (functional hash), so renamed or rewritten but
    identical functions share results; a hash of the canonical source if fingerprinting fails."""
    prog = source_or_program if isinstance(source_or_program, dsl.Program) else dsl.parse(source_or_program)
    try:
        return str(dsl.fingerprint(prog))
    except Exception:  # noqa: BLE001 - a rule the fingerprinter chokes on still gets a key
        return "src:" + hashlib.sha256(prog.source().encode()).hexdigest()[:32]


__all__ = ["LrGrid", "WdGrid", "wd_axis", "SuccessiveHalving", "TUNING_PRESETS", "with_tuning_preset",
           "RuleEvalConfig", "baseline_source", "library_source", "rule_key"]
