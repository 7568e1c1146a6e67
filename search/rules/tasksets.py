"""A rule campaign's task sets: search (screen + promote), validation (rank the winners), transfer
(``optforge verify``, reporting only), and the tuning protocol new campaigns get by default.

Defaults are ``proxies.TASK_GROUPS``, disjoint in family. ``tasks = [...]`` (the older field) is
the search set, and given alone it means what it always did: no validation stage, the search
tasks rank the winners. Sets that share a task family are refused (a validation score on the
family the search tuned on is not a validation), and so is anything that cannot be loaded
(``proxies.resolve_task`` raises ``TaskLoadError`` naming the spec) - at campaign start.

Tuning defaults (in ``[evaluator]``, for the search and the validation alike): the
``evaluators.TUNING_PRESETS["budget"]`` protocol - 5 lrs (1e-4..1) x weight decay {0, 1e-2, 0.1}
in one vectorized run, successive halving keeping the best 3 points after 30% of the steps - and
per-task log ratios clipped to +-0.5 (``task_clip``). Issue 11 asks that screening one candidate
cost no more than the older lr-only sweep: measured (bench/results/eval.md) this preset costs
0.69x its CPU time and ranks 43 rules closer to the full 9 x 5 grid (Spearman 0.84 vs 0.79);
``"thorough"`` (9 x 5, keep 5) reaches 0.93 at 2.0x - set its fields in ``[evaluator]`` to use it
(examples/discovery.toml does). Set ``lr_grid``, ``wd_grid`` or ``halving`` in ``[evaluator]`` to
override one, or ``wd_grid``/``halving``/``task_clip`` to ``false`` for the older protocol.
"""
from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import evaluators
import proxies
from search.core import Campaign

#: evaluator settings a rule campaign gets unless its ``[evaluator]`` table says otherwise
TUNING_DEFAULTS: dict[str, Any] = {**evaluators.TUNING_PRESETS["budget"], "task_clip": 0.5}


@dataclass
class BankPlan:
    """A campaign's use of the sampled task bank (``[bank]``): its family split, the fixed validation
    and test banks, and how the search's tasks are drawn each generation. A pure function of the
    campaign (seed and ``[bank]`` table); a run records it (``meta.bank``) and keeps the recorded one."""
    search_families: list[str]
    validation_families: list[str]
    test_families: list[str]
    validation: list[str]
    test: list[str]
    per_generation: int
    seed: int
    aggregate: str = "iqm"
    named_search: list[str] = dc_field(default_factory=list)

    def search_draw(self, generation: int) -> list[str]:
        """The bank tasks of ``generation`` (0: the seed rules' generation)."""
        return proxies.sample_tasks(self.search_families, self.per_generation,
                                    proxies.draw_seed(self.seed, "search", generation))

    def generation_tasks(self, generation: int) -> list[str]:
        """What the search trains on in ``generation``: the named search tasks, then that generation's draw."""
        return list(dict.fromkeys(self.named_search + self.search_draw(generation)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BankPlan":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def bank_plan(c: Campaign) -> BankPlan | None:
    """The campaign's bank plan (None without ``[bank]``); raises ValueError naming a bad setting."""
    b = c.bank
    if b is None:
        return None
    have = proxies.bank_families()
    pool = list(b.families) if b.families is not None else list(have)
    given = {"search": b.search_families, "validation": b.validation_families, "test": b.test_families}
    for name, fams in [("families", pool)] + [(f"{k}_families", v) for k, v in given.items() if v is not None]:
        unknown = [f for f in fams if f not in have]
        if unknown:
            raise ValueError(f"bank.{name}: unknown bank family {unknown[0]!r}; families here: {', '.join(have)}")
    if all(v is not None for v in given.values()):
        split = {k: list(v) for k, v in given.items()}
    else:
        rest = [f for f in pool if not any(f in (v or []) for v in given.values())]
        n = max(1, len(pool) // 3)
        nv = 0 if given["validation"] is not None else n
        nt = 0 if given["test"] is not None or b.test == 0 else n
        seed = proxies.draw_seed(c.random_seed, "families")
        if given["search"] is None:     # the search takes what validation and test leave
            auto = proxies.split_families(rest, seed, nv, nt)
        else:
            random.Random(seed).shuffle(rest)
            auto = {"validation": sorted(rest[:nv]), "test": sorted(rest[nv:nv + nt]), "search": []}
        split = {k: list(given[k]) if given[k] is not None else auto[k] for k in given}
    for k, fams in split.items():
        if not fams and not (k == "test" and b.test == 0):
            raise ValueError(f"bank: no {k} family left after the split ({split}); give more families or set "
                             f"bank.{k}_families")
    for a, b_ in (("search", "validation"), ("search", "test"), ("validation", "test")):
        shared = sorted(set(split[a]) & set(split[b_]))
        if shared:
            raise ValueError(f"bank.{b_}_families: shares {', '.join(shared)} with the {a} families; the banks "
                             "are split by family so that validation and test measure transfer")
    seed = c.random_seed
    return BankPlan(search_families=split["search"], validation_families=split["validation"],
                    test_families=split["test"],
                    validation=proxies.sample_tasks(split["validation"], b.validation,
                                                    proxies.draw_seed(seed, "validation")),
                    test=proxies.sample_tasks(split["test"], b.test, proxies.draw_seed(seed, "test")),
                    per_generation=b.per_generation, seed=seed, aggregate=b.aggregate,
                    named_search=_named_search(c))


def _named_search(c: Campaign) -> list[str]:
    if c.search_tasks is not None and c.tasks is not None:
        raise ValueError("tasks and search_tasks: give one of them (tasks is the older name of search_tasks)")
    if c.search_tasks is not None:
        return list(c.search_tasks)
    if c.tasks is not None:
        return list(c.tasks)
    return [] if c.bank is not None else list(proxies.TASK_GROUPS["search"])


def search_tasks(c: Campaign) -> list[str]:
    """The named tasks the search screens and promotes on (with ``[bank]``: besides each generation's
    draw, :meth:`BankPlan.generation_tasks`; none by default)."""
    return _named_search(c)


def campaign_rung_tasks(c: Campaign) -> list[str]:
    """The tasks ``[funnel.rungs]`` adds at the fidelities promoted to (search tasks too: selection sees them)."""
    return list(dict.fromkeys(t for ts in c.funnel.rungs.values() for t in ts))


def validation_tasks(c: Campaign, plan: BankPlan | None = None) -> list[str]:
    """The validation stage's tasks ([] = no stage: an old ``tasks = [...]`` file, or ``[]`` given);
    with ``[bank]``, the named ones (none by default) and the validation bank."""
    plan = plan or bank_plan(c)
    if plan is not None:
        return list(dict.fromkeys(list(c.validation_tasks or []) + plan.validation))
    if c.validation_tasks is not None:
        return list(c.validation_tasks)
    if c.tasks is not None:
        return []
    return list(proxies.TASK_GROUPS["validation"])


def task_aggregate(c: Campaign) -> str:
    """How a campaign aggregates task scores: ``[bank] aggregate`` (default ``iqm``), else ``mean``."""
    return c.bank.aggregate if c.bank is not None else "mean"


def families(tasks: list[str]) -> dict[str, str]:
    return {t: proxies.task_family(t) for t in tasks}


def transfer_tasks(c: Campaign, given: list[str] | None = None, plan: BankPlan | None = None) -> list[str]:
    """Transfer tasks for verify: ``given`` or ``[verify] tasks``, else with ``[bank]`` the test bank,
    else the transfer group minus any family used in search or validation."""
    explicit = given if given is not None else c.verify.tasks
    if explicit is not None:
        return list(explicit)
    plan = plan or bank_plan(c)
    if plan is not None:
        return list(plan.test)
    used = set(families(search_tasks(c) + campaign_rung_tasks(c) + validation_tasks(c)).values())
    return [t for t in proxies.TASK_GROUPS["transfer"] if proxies.task_family(t) not in used]


def check_task_sets(c: Campaign) -> None:
    """Refuse overlapping sets and unloadable tasks, naming the field (a ValueError: the campaign
    loader turns it into a CampaignError naming the file)."""
    plan = bank_plan(c)
    again = sorted(set(search_tasks(c)) & set(campaign_rung_tasks(c)))
    if again:
        raise ValueError(f"funnel.rungs: {', '.join(again)} already in the search tasks (trained at every "
                         "fidelity); a rung adds tasks the cheaper fidelities do not train on")
    sets = {"search_tasks" if c.tasks is None else "tasks": search_tasks(c) + campaign_rung_tasks(c),
            "validation_tasks": validation_tasks(c, plan), "verify.tasks": c.verify.tasks or []}
    if plan is not None:
        sets["verify.tasks"] = transfer_tasks(c, plan=plan)
        if not sets["search_tasks" if c.tasks is None else "tasks"] and not plan.search_families:
            raise ValueError("bank: no search family and no search_tasks: nothing to search on")
    for field, tasks in sets.items():
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"{field}: a task is listed twice: {tasks}")
        for t in tasks:
            try:
                proxies.resolve_task(t)
            except proxies.TaskLoadError as e:
                raise ValueError(f"{field}: {e}") from None
    fam = {f: families(ts) for f, ts in sets.items()}
    if plan is not None:   # the whole search families, not one draw, must stay out of the other sets
        fam["search_tasks" if c.tasks is None else "tasks"].update({f"bank:{f}/*": f for f in plan.search_families})
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted({t for t, f in fam[a].items() if f in set(fam[b].values())})
            if shared:
                other = sorted(t for t, f in fam[b].items() if f in {fam[a][s] for s in shared})
                raise ValueError(
                    f"{b}: shares task families with {a} ({', '.join(shared)} / {', '.join(other)}; family "
                    f"{', '.join(sorted({fam[a][s] for s in shared}))}): the sets must be disjoint so that "
                    f"{b} measures transfer, not the search's own tasks. Pick other tasks (suggested groups: "
                    f"proxies.TASK_GROUPS), or set validation_tasks = [] for no validation stage")
    if c.bank is not None and c.bank.track_fidelity not in (None, *proxies.FIDELITIES):
        raise ValueError(f"bank.track_fidelity: unknown fidelity {c.bank.track_fidelity!r}; known: "
                         f"{', '.join(proxies.FIDELITIES)}")
    if c.validation.fidelity is not None and c.validation.fidelity not in proxies.FIDELITIES:
        raise ValueError(f"validation.fidelity: unknown fidelity {c.validation.fidelity!r}; known: "
                         f"{', '.join(proxies.FIDELITIES)}")
    c.validation.fresh_seeds(c.eval_seeds or c.evaluator.get("seeds") or default_seeds())  # disjoint from the search's


def default_seeds() -> list[int]:
    """The evaluator's default training seeds (a campaign without ``eval_seeds`` trains on these)."""
    return list(evaluators.RuleEvalConfig.model_fields["seeds"].default_factory())


def with_tuning_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` (an evaluator config dict) with :data:`TUNING_DEFAULTS` where unset; ``false`` = off."""
    out = dict(d)
    for k, v in TUNING_DEFAULTS.items():
        if k not in out:
            out[k] = copy.deepcopy(v)   # the preset's dicts are shared: never hand them out
        elif out[k] is False:
            out[k] = None
    return out


def validation_config_dict(base: dict[str, Any], c: Campaign, plan: BankPlan | None = None
                           ) -> dict[str, Any] | None:
    """The validation evaluator's config dict: the search's with the validation tasks (None: no stage)."""
    tasks = validation_tasks(c, plan)
    if not tasks:
        return None
    d = dict(base)
    d["tasks"] = tasks
    d["seeds"] = c.validation.fresh_seeds(base.get("seeds") or default_seeds())   # seeds the search never used
    if d.get("cache_dir"):   # same cache (keys carry the config hash), a separate file keeps it small
        d["cache_dir"] = str(Path(d["cache_dir"]).with_name(Path(d["cache_dir"]).name + "_validation"))
    return d


__all__ = ["TUNING_DEFAULTS", "BankPlan", "bank_plan", "task_aggregate",
           "search_tasks", "campaign_rung_tasks", "validation_tasks", "transfer_tasks", "check_task_sets",
           "with_tuning_defaults", "validation_config_dict", "families"]
