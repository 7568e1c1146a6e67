"""Adaptive operator choice: a bandit over operators, rewarded by improvement per second.

Each operator (every random operator, LLM mutation, LLM crossover; for prompt campaigns each
prompt operator) is an arm. Every proposal an operator makes is one pull of its arm, whatever
became of it:

- reward: the child's improvement over its best parent at the screening fidelity (the cheapest
  one), clipped at 0; 0 for an invalid or duplicate proposal and for a failed evaluation;
- cost: the wall seconds the search spent on it: waiting for the LLM (the operator's share of
  its batch's call, repair included) plus the child's evaluations (``cost = "seconds"``, the
  default), or, for runs that must be reproducible bit for bit whatever the machine,
  evaluation units plus ``llm_call_units`` per LLM proposal (``cost = "units"``).

An arm's value is its *rate*, sum of rewards over sum of costs: expected improvement per
second spent (ratio of sums, so free failures such as a random operator's duplicate do not
dilute it and a slow LLM is charged for its time). The bandit turns the rates into **shares**
kept inside each operator's ``[floor, ceiling]``. By default (``share_of = "time"``) those are
shares of the search's *time*: an operator whose proposals cost ten times more gets a tenth of
the children for the same share, so a slow, useless LLM at its floor costs at most its floor of
the time; the children's shares (the probability that the next child comes from each operator)
follow by dividing by each operator's mean cost per proposal. ``share_of = "children"`` applies
floors and ceilings to the children directly. Each planned child draws its operator from the
children's shares (the bandit's own seeded RNG; its state, counters and the share history,
children's shares per generation, are checkpointed with the engine's).

Algorithms (``[operators.bandit] algorithm``):

- ``fixed`` (default): today's mix (``llm_share`` and the weights); the bandit only keeps the
  statistics. The engine's RNG stream and results are exactly what they were.
- ``ucb``: UCB1 on the rate, scale-free: ``index = rate / pooled_rate + c * sqrt(2 ln N / n)``
  (``c = exploration``, ``N`` pulls in all, ``n`` of this arm; an arm never pulled comes first).
  Shares: every arm gets its floor; the rest goes to the highest index up to its ceiling, then
  to the next (equal indices share equally).
- ``thompson``: Gamma-Poisson Thompson sampling on the rate. Rewards are counted in units of
  the mean positive improvement ``u``; arm ``a`` has posterior ``Gamma(k + R_a / u, b0 + C_a)``
  with a prior of ``k = prior`` improvements over ``b0`` seconds, chosen so the prior mean is
  the pooled rate (a smaller ``prior`` trusts an arm's own evidence sooner). Shares: the
  UCB allocation applied to the ranking of each posterior draw, averaged over ``samples``
  draws (so an arm's share beyond its floor is its probability of being the best, and what a
  capped arm cannot take goes to the arms most likely to be next).

``decay`` (< 1) multiplies every arm's counters by that factor each generation, so old
evidence fades when the landscape changes (improvements get rarer as the search goes on).
The weights of the ``[operators]`` mix only say which operators take part (weight > 0) in the
adaptive modes; ``llm_share`` is then ignored: LLM arms take part while the LLM is usable.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .types import rng_state, set_rng_state

Algorithm = Literal["fixed", "ucb", "thompson"]


class BanditError(ValueError):
    """Floors and ceilings that cannot be met by the operators of a campaign."""


class BanditConfig(BaseModel):
    """The ``[operators.bandit]`` table."""
    model_config = ConfigDict(extra="forbid")

    algorithm: Algorithm = "fixed"
    floor: float = Field(0.02, ge=0, le=1)        # every operator's minimum share, unless in floors
    ceiling: float = Field(1.0, gt=0, le=1)       # every operator's maximum share, unless in ceilings
    # what the shares (floors and ceilings included) divide: the search's time (cost), so a slow
    # operator's floor bounds the time it can take, or its children
    share_of: Literal["time", "children"] = "time"
    floors: dict[str, float] = Field(default_factory=dict)
    ceilings: dict[str, float] = Field(default_factory=dict)
    exploration: float = Field(1.0, ge=0)         # UCB's c
    decay: float = Field(1.0, gt=0, le=1)         # per-generation discount of old observations
    cost: Literal["seconds", "units"] = "seconds"
    llm_call_units: float = Field(1.0, ge=0)      # cost = "units": one LLM proposal, in evaluation units
    samples: int = Field(256, ge=16)              # Thompson: Monte-Carlo draws per generation for the shares
    prior: float = Field(0.5, gt=0)               # Thompson: the prior's weight, in improvements

    @model_validator(mode="after")
    def _ranges(self) -> "BanditConfig":
        for table in ("floors", "ceilings"):
            for k, v in getattr(self, table).items():
                if not 0 <= v <= 1:
                    raise ValueError(f"operators.bandit.{table}[{k!r}] must be a share in [0, 1], got {v}")
        for k in set(self.floors) | set(self.ceilings):
            if self.floor_of(k) > self.ceiling_of(k):
                raise ValueError(f"operators.bandit: operator {k!r} has floor {self.floor_of(k)} above its "
                                 f"ceiling {self.ceiling_of(k)}")
        return self

    def floor_of(self, name: str) -> float:
        return float(self.floors.get(name, self.floor))

    def ceiling_of(self, name: str) -> float:
        return float(self.ceilings.get(name, self.ceiling))

    def check_arms(self, arms: Sequence[str]) -> None:
        """Raise BanditError when the floors or ceilings of these operators cannot sum to one share."""
        if self.algorithm == "fixed" or not arms:
            return
        lo = sum(self.floor_of(a) for a in arms)
        hi = sum(self.ceiling_of(a) for a in arms)
        if lo > 1 + 1e-9:
            raise BanditError(f"operators.bandit: the floors of the {len(arms)} operators ({', '.join(arms)}) sum to "
                              f"{lo:.3g} > 1; lower 'floor' (default {self.floor}) or set smaller 'floors'")
        if hi < 1 - 1e-9:
            raise BanditError(f"operators.bandit: the ceilings of the {len(arms)} operators ({', '.join(arms)}) sum "
                              f"to {hi:.3g} < 1; raise 'ceiling' or the 'ceilings' of some operators")


# ------------------------------------------------------------------------------ arithmetic


def fill_by_priority(groups: Sequence[Sequence[str]], floors: dict[str, float],
                     ceilings: dict[str, float]) -> dict[str, float]:
    """Shares: each arm at its floor, the rest given to the groups in order (best first), split
    equally inside a group, no arm above its ceiling. Arms are those named in ``groups``."""
    arms = [a for g in groups for a in g]
    q = {a: floors[a] for a in arms}
    left = 1.0 - sum(q.values())
    for g in groups:
        open_ = [a for a in g if ceilings[a] - q[a] > 1e-15]
        while left > 1e-15 and open_:
            give = left / len(open_)
            for a in list(open_):
                d = min(give, ceilings[a] - q[a])
                q[a] += d
                left -= d
                if ceilings[a] - q[a] <= 1e-15:
                    open_.remove(a)
        if left <= 1e-15:
            break
    return _relax(q, left)


def _relax(q: dict[str, float], left: float) -> dict[str, float]:
    """When the ceilings of the usable arms sum below 1 (e.g. the LLM arms dropped out), the
    remainder is spread in proportion to the shares (ceilings are exceeded rather than leaving
    children unassigned)."""
    if left > 1e-12:
        s = sum(q.values())
        if s <= 0:
            return {a: 1.0 / len(q) for a in q}
        return {a: v / s for a, v in q.items()}
    return q


@dataclass
class Arm:
    """One operator's counters: discounted (n, reward, cost, improved) for the bandit, plus the
    undiscounted totals shown to the user."""
    n: float = 0.0
    reward: float = 0.0
    cost: float = 0.0
    improved_w: float = 0.0
    children: int = 0          # proposals (pulls)
    valid: int = 0             # proposals that became a new candidate
    improved: int = 0          # ... that beat their best parent at the screening fidelity
    reward_total: float = 0.0
    cost_total: float = 0.0

    def rate(self) -> float:
        return self.reward / self.cost if self.cost > 0 else 0.0


@dataclass
class Observation:
    """One pull: what a proposal of ``operator`` gave (reward >= 0) and what it cost (> 0)."""
    operator: str
    reward: float
    cost: float
    valid: bool = False
    improved: bool = False


MIN_COST = 1e-3


def ucb_indices(arms: dict[str, Arm], c: float) -> dict[str, float]:
    """Scale-free UCB1 index per arm (inf for an arm never pulled)."""
    n_all = sum(a.n for a in arms.values())
    r_all = sum(a.reward for a in arms.values())
    c_all = sum(a.cost for a in arms.values())
    pooled = r_all / c_all if c_all > 0 else 0.0
    out = {}
    for name, a in arms.items():
        if a.n <= 1e-12:
            out[name] = math.inf
            continue
        mean = a.rate() / pooled if pooled > 0 else 0.0
        out[name] = mean + c * math.sqrt(2.0 * math.log(max(n_all, 1.0)) / a.n)
    return out


def gamma_posteriors(arms: dict[str, Arm], prior: float = 1.0) -> dict[str, tuple[float, float]]:
    """(shape, rate) of each arm's Gamma posterior on its reward rate, in units of the mean
    positive improvement per second; the prior's mean is the pooled rate, its weight ``prior``
    improvements (``Gamma(prior, prior / pooled rate)``)."""
    r_all = sum(a.reward for a in arms.values())
    c_all = sum(a.cost for a in arms.values())
    i_all = sum(a.improved_w for a in arms.values())
    u = r_all / i_all if i_all > 1e-12 and r_all > 0 else 1.0
    b0 = prior * c_all / max(1.0, i_all) if c_all > 0 else prior
    return {name: (prior + a.reward / u, b0 + a.cost) for name, a in arms.items()}


def thompson_shares(arms: dict[str, Arm], rng: random.Random, samples: int, floors: dict[str, float],
                    ceilings: dict[str, float], prior: float = 1.0) -> dict[str, float]:
    """Thompson shares: the mean over ``samples`` posterior draws of the shares each draw's
    ranking gives (``fill_by_priority``): floors, then the best sampled arm up to its ceiling,
    then the next. Without binding ceilings this is ``floor + (1 - sum floors) * P(best)``."""
    post = gamma_posteriors(arms, prior)
    names = sorted(arms)
    acc = dict.fromkeys(names, 0.0)
    for _ in range(samples):
        draw = {n: rng.gammavariate(post[n][0], 1.0 / post[n][1]) for n in names}
        order = sorted(names, key=lambda n: -draw[n])
        for n, v in fill_by_priority([[n] for n in order], floors, ceilings).items():
            acc[n] += v
    return {n: v / samples for n, v in acc.items()}


def children_shares(time_shares: dict[str, float], arms: dict[str, Arm]) -> dict[str, float]:
    """Shares of the children that spend ``time_shares`` of the search's cost: each arm's time share
    divided by its mean cost per proposal (the pooled mean for an arm never pulled), normalized."""
    n_all = sum(a.n for a in arms.values())
    pooled = sum(a.cost for a in arms.values()) / n_all if n_all > 1e-12 else 1.0
    q = {k: t / (arms[k].cost / arms[k].n if arms[k].n > 1e-12 else pooled or 1.0) for k, t in time_shares.items()}
    s = sum(q.values())
    return {k: v / s for k, v in q.items()} if s > 0 else dict(time_shares)


# ------------------------------------------------------------------------------ the chooser


@dataclass
class OperatorBandit:
    """Operator shares for each generation, draws from them, and the per-operator statistics.

    ``random_mix`` / ``llm_mix``: the campaign's operator weights (> 0 take part);
    ``llm_share``: the fixed mode's LLM probability; ``seed``: the bandit's own RNG seed.
    """
    config: BanditConfig
    random_mix: dict[str, float]
    llm_mix: dict[str, float]
    llm_share: float = 0.0
    seed: int = 0
    arms: dict[str, Arm] = field(default_factory=dict)
    history: list[list[Any]] = field(default_factory=list)   # [generation, {operator: share}]
    current: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"operator-bandit-{self.seed}")
        self._cache: dict[tuple[str, ...], dict[str, float]] = {}
        for name in sorted(set(self.random_mix) | set(self.llm_mix)):
            self.arms.setdefault(name, Arm())
        self.config.check_arms(sorted(self.random_mix))                     # the LLM may drop out
        self.config.check_arms(sorted(set(self.random_mix) | set(self.llm_mix)))

    @property
    def adaptive(self) -> bool:
        return self.config.algorithm != "fixed"

    def usable(self, llm_ok: bool) -> list[str]:
        return sorted(set(self.random_mix) | (set(self.llm_mix) if llm_ok else set()))

    def fixed_shares(self, llm_ok: bool) -> dict[str, float]:
        """The fixed mix as shares (what ``choose_operator`` draws from in ``fixed`` mode)."""
        s = self.llm_share if llm_ok and self.llm_mix else 0.0
        out: dict[str, float] = {}
        for mix, w in ((self.random_mix, 1.0 - s), (self.llm_mix, s)):
            tot = sum(mix.values())
            for k, v in mix.items():
                if tot > 0 and w > 0:
                    out[k] = out.get(k, 0.0) + w * v / tot
        return out

    def shares(self, llm_ok: bool, among: Sequence[str] | None = None) -> dict[str, float]:
        """This generation's shares over the usable operators, or over ``among`` (operators a
        strategy names itself, e.g. a prompt algorithm's LLM operator and the word edit)."""
        names = sorted(set(among)) if among is not None else self.usable(llm_ok)
        if not names:
            return {}
        key = tuple(names) if among is not None else None
        if key is not None and key in self._cache:
            return self._cache[key]
        if not self.adaptive:
            fs = self.fixed_shares(llm_ok)
            out = {a: fs.get(a, 0.0) for a in names}
        else:
            floors = {a: self.config.floor_of(a) for a in names}
            ceils = {a: self.config.ceiling_of(a) for a in names}
            s = sum(floors.values())
            if s > 1:
                floors = {a: v / s for a, v in floors.items()}
            sub = {a: self.arms.setdefault(a, Arm()) for a in names}
            if self.config.algorithm == "ucb":
                idx = ucb_indices(sub, self.config.exploration)
                levels = sorted(set(idx.values()), reverse=True)
                out = fill_by_priority([[a for a in names if idx[a] == v] for v in levels], floors, ceils)
            else:
                out = thompson_shares(sub, self.rng, self.config.samples, floors, ceils, self.config.prior)
            if self.config.share_of == "time":
                out = children_shares(out, sub)
        if key is not None:
            self._cache[key] = out
            if self.history:   # what this generation draws from (prompt strategies name their operators)
                self.history[-1][1] = {k: round(v, 6) for k, v in out.items()}
        return out

    def begin_generation(self, generation: int, llm_ok: bool) -> dict[str, float]:
        """Compute and record the shares the next plan draws from."""
        self._cache.clear()
        self.current = self.shares(llm_ok)
        self.history.append([generation, {k: round(v, 6) for k, v in self.current.items()}])
        return self.current

    def draw(self, arity_ok: Callable[[str], bool] | None = None, among: Sequence[str] | None = None,
             llm_ok: bool = True) -> str | None:
        """One operator from this generation's shares, restricted to ``among`` and ``arity_ok``
        (renormalized); None when no operator qualifies."""
        sh = self.shares(llm_ok, among) if among is not None or not self.current else self.current
        names = [a for a in sorted(sh) if sh[a] > 0 and (arity_ok is None or arity_ok(a))]
        if not names:
            return None
        return self.rng.choices(names, weights=[sh[a] for a in names])[0]

    def observe(self, obs: Sequence[Observation]) -> None:
        """One generation's pulls, in order: decay old counters, then add."""
        g = self.config.decay
        if g < 1:
            for a in self.arms.values():
                a.n, a.reward, a.cost, a.improved_w = a.n * g, a.reward * g, a.cost * g, a.improved_w * g
        for o in obs:
            a = self.arms.setdefault(o.operator, Arm())
            r, c = max(0.0, float(o.reward)), max(MIN_COST, float(o.cost))
            a.n += 1
            a.reward += r
            a.cost += c
            a.improved_w += float(o.improved)
            a.children += 1
            a.valid += int(o.valid)
            a.improved += int(o.improved)
            a.reward_total += r
            a.cost_total += c

    # -- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.config.algorithm, "rng": rng_state(self.rng),
                "arms": {k: asdict(a) for k, a in sorted(self.arms.items())},
                "history": [[g, dict(sh)] for g, sh in self.history], "current": dict(self.current),
                "cost": self.config.cost}

    def load_state_dict(self, s: dict[str, Any] | None) -> None:
        if not s:
            return
        set_rng_state(self.rng, s["rng"])
        self.arms = {k: Arm(**v) for k, v in s["arms"].items()}
        self.history = [list(h) for h in s["history"]]
        self.current = dict(s.get("current") or {})


def operator_table(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per operator from a checkpointed bandit state: children, valid, improved, mean reward
    (reward per unit of cost), the latest share, and the share at a few points over the run."""
    if not state:
        return []
    hist = state.get("history") or []
    rows = []
    for name, a in sorted(state.get("arms", {}).items()):
        if not a["children"] and not any(name in h[1] for h in hist):
            continue
        series = [h[1].get(name, 0.0) for h in hist]
        rows.append({"operator": name, "children": a["children"], "valid": a["valid"], "improved": a["improved"],
                     "mean_reward": a["reward_total"] / a["cost_total"] if a["cost_total"] > 0 else 0.0,
                     "reward": a["reward_total"], "cost": a["cost_total"],
                     "share": series[-1] if series else 0.0, "series": series})
    return rows


def share_points(series: Sequence[float], k: int = 5) -> list[float]:
    """``k`` evenly spaced samples of a share series (first and last included)."""
    if not series:
        return []
    if len(series) <= k:
        return list(series)
    return [series[round(i * (len(series) - 1) / (k - 1))] for i in range(k)]
