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
from pathlib import Path
from typing import Any

import evaluators
import proxies
from search.core import Campaign

#: evaluator settings a rule campaign gets unless its ``[evaluator]`` table says otherwise
TUNING_DEFAULTS: dict[str, Any] = {**evaluators.TUNING_PRESETS["budget"], "task_clip": 0.5}


def search_tasks(c: Campaign) -> list[str]:
    """The tasks the search screens and promotes on."""
    if c.search_tasks is not None and c.tasks is not None:
        raise ValueError("tasks and search_tasks: give one of them (tasks is the older name of search_tasks)")
    if c.search_tasks is not None:
        return list(c.search_tasks)
    if c.tasks is not None:
        return list(c.tasks)
    return list(proxies.TASK_GROUPS["search"])


def validation_tasks(c: Campaign) -> list[str]:
    """The validation stage's tasks ([] = no stage: an old ``tasks = [...]`` file, or ``[]`` given)."""
    if c.validation_tasks is not None:
        return list(c.validation_tasks)
    if c.tasks is not None:
        return []
    return list(proxies.TASK_GROUPS["validation"])


def families(tasks: list[str]) -> dict[str, str]:
    return {t: proxies.task_family(t) for t in tasks}


def transfer_tasks(c: Campaign, given: list[str] | None = None) -> list[str]:
    """Transfer tasks for verify: ``given`` or ``[verify] tasks``, else the transfer group minus any
    family used in search or validation."""
    explicit = given if given is not None else c.verify.tasks
    if explicit is not None:
        return list(explicit)
    used = set(families(search_tasks(c) + validation_tasks(c)).values())
    return [t for t in proxies.TASK_GROUPS["transfer"] if proxies.task_family(t) not in used]


def check_task_sets(c: Campaign) -> None:
    """Refuse overlapping sets and unloadable tasks, naming the field (a ValueError: the campaign
    loader turns it into a CampaignError naming the file)."""
    sets = {"search_tasks" if c.tasks is None else "tasks": search_tasks(c),
            "validation_tasks": validation_tasks(c), "verify.tasks": c.verify.tasks or []}
    for field, tasks in sets.items():
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"{field}: a task is listed twice: {tasks}")
        for t in tasks:
            try:
                proxies.resolve_task(t)
            except proxies.TaskLoadError as e:
                raise ValueError(f"{field}: {e}") from None
    fam = {f: families(ts) for f, ts in sets.items()}
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
    if c.validation.fidelity is not None and c.validation.fidelity not in proxies.FIDELITIES:
        raise ValueError(f"validation.fidelity: unknown fidelity {c.validation.fidelity!r}; known: "
                         f"{', '.join(proxies.FIDELITIES)}")


def with_tuning_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` (an evaluator config dict) with :data:`TUNING_DEFAULTS` where unset; ``false`` = off."""
    out = dict(d)
    for k, v in TUNING_DEFAULTS.items():
        if k not in out:
            out[k] = copy.deepcopy(v)   # the preset's dicts are shared: never hand them out
        elif out[k] is False:
            out[k] = None
    return out


def validation_config_dict(base: dict[str, Any], c: Campaign) -> dict[str, Any] | None:
    """The validation evaluator's config dict: the search's with the validation tasks (None: no stage)."""
    tasks = validation_tasks(c)
    if not tasks:
        return None
    d = dict(base)
    d["tasks"] = tasks
    if d.get("cache_dir"):   # same cache (keys carry the config hash), a separate file keeps it small
        d["cache_dir"] = str(Path(d["cache_dir"]).with_name(Path(d["cache_dir"]).name + "_validation"))
    return d


__all__ = ["TUNING_DEFAULTS", "search_tasks", "validation_tasks", "transfer_tasks", "check_task_sets",
           "with_tuning_defaults", "validation_config_dict", "families"]
