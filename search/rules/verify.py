"""``optforge verify RUN``: does a run's winner hold where nothing selected it?

The top K of the final ranking (validated first) are re-scored - as they would be exported
(simplified) - on the tasks' held-out **test** splits, with **training seeds the search never
used** (four by default), on the campaign's validation tasks and on **transfer** tasks outside
both the search's and the validation's families (``[verify] tasks``, default
``proxies.TASK_GROUPS["transfer"]`` minus used families), under the campaign's own tuning protocol
(lr x wd grid, halving, clip) or a named ``evaluators.TUNING_PRESETS`` protocol for every rule alike
(``tuning``: a search tuned on a coarse grid can win by where the grid's points fall; a finer grid
at verification tells). Rule and AdamW are paired on the same seeds. The seed rules are
scored alongside for reference. The result is stored in the run (``meta.verify`` in its SQLite
file) and shown by ``optforge show`` and the HTML report.

Each entry gets an ``evaluators.Estimate`` on the transfer tasks (the validation tasks' test
split when there are none): a hierarchical bootstrap interval of the mean score and each task's
noise floor (tuned AdamW against itself on disjoint seeds, ``evaluators.noise``). A winner
*holds* when the interval's lower bound is > 0 and it wins more than half of those tasks beyond
their noise floors; it is *worse* when the upper bound is < 0; otherwise it is indistinguishable
from AdamW (docs/statistics.md). Runs verified before intervals existed still display (``-``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evaluators import (
    TUNING_PRESETS,
    Candidate,
    Estimate,
    NoiseError,
    RuleEvalConfig,
    RuleEvaluator,
    StatsError,
    describe,
    estimate_results,
    noise_floors,
    with_tuning_preset,
)
from evaluators.base import WORST_SCORE, EvalResult, Status
from search.core import Campaign, RunStore, RunView, db_path, fmt_score, fmt_won

from .kind import RuleKind, eval_config_dict, rule_text
from .tasksets import search_tasks, task_aggregate, transfer_tasks, validation_tasks


class VerifyError(ValueError):
    """A run that cannot be verified (not a rule run, nothing ranked, bad tasks); says what to do."""


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


#: fresh training seeds verify uses by default (a verdict needs several; docs/statistics.md)
DEFAULT_SEEDS = 4


def holds(entry: dict[str, Any]) -> bool:
    """A verified winner holds: its verdict is "holds" (interval above 0, most tasks won beyond their
    noise floors). Entries stored before verdicts existed: mean > 0 and more than half the tasks won."""
    if "verdict" in entry:
        return entry["verdict"] == "holds"
    m, won, n = entry.get("verified"), entry.get("verified_won", 0), entry.get("verified_n", 0)
    return m is not None and m > 0 and 2 * won > n


def baseline_name(baseline: str) -> str:
    return "tuned AdamW" if baseline == "adamw" else f"tuned {baseline}"


def _estimate(r: EvalResult, tasks: list[str], floors: dict[str, float], clip: float,
              aggregate: str = "mean") -> Estimate | None:
    """The entry's Estimate on ``tasks`` (None when a task failed: no paired seeds to resample)."""
    ok = {t: r.tasks[t] for t in tasks if t in r.tasks and r.tasks[t].status == Status.ok}
    if not tasks or len(ok) < len(tasks):
        return None
    try:
        return estimate_results(ok, floors, clip=clip, aggregate=aggregate)
    except StatsError:
        return None


def _row_text(row: dict, simplify) -> str:
    v = row["meta"].get("validation", {}).get("text")
    s = row["meta"].get("simplified", {}).get("text")
    return v or s or simplify(row["text"])


def _task_cells(r: EvalResult, group: dict[str, str], floors: dict[str, float], clip: float,
                est: Estimate | None = None) -> dict[str, dict]:
    """Per task: score, interval, tuned points and noise floor. A task of ``est`` (the verdict's estimate)
    takes its interval from there; the others are bootstrapped on their own."""
    out = {}
    for t, tr in r.tasks.items():
        ok = tr.status == Status.ok
        ci, score = None, tr.score if ok else None
        if ok:
            try:   # the cell's score is the estimate's (per-seed clipped mean), so it matches its interval
                own = est is not None and t in est.tasks
                te = est.tasks[t] if own else estimate_results({t: tr}, clip=clip).tasks[t]
                ci, score = [te.ci[0], te.ci[1]], te.score
            except StatsError:
                pass
        out[t] = {"group": group.get(t, "?"), "score": score,
                  "log_ratio": tr.extra.get("log_ratio", tr.score) if ok else None,
                  "metric": tr.metric if ok else None, "baseline": tr.baseline, "metric_name": tr.metric_name,
                  "lr": tr.best_lr, "wd": tr.extra.get("best_wd"), "baseline_lr": tr.extra.get("baseline_lr"),
                  "baseline_wd": tr.extra.get("baseline_wd"), "status": str(tr.status.value),
                  "reason": tr.reason, "ci": ci, "noise": floors.get(t)}
    return out


def verify_run(run: str | Path, *, top: int | None = None, tasks: list[str] | None = None,
               seeds: list[int] | None = None, fidelity: str | None = None, executor: str | None = None,
               with_seeds: bool = True, cache_dir: str | Path | None = None, noise_replicates: int = 4,
               baseline: str | None = None, validation: bool = True, tuning: str | None = None,
               log=print) -> dict[str, Any]:
    """Verify a rule run (module docstring); returns what it stores under ``meta.verify``. Results are
    cached in ``cache_dir`` (default ``<run>/eval_cache_verify``; runs verified alike may share one).

    ``baseline`` (a ``dsl.library`` name such as ``"muon"``) verifies against that rule instead of the
    campaign's baseline, tuned the same way, with its own noise floors (it against itself); such a
    record is stored under ``meta.verify_vs[baseline]`` and leaves the main verification alone.
    ``validation=False`` skips the validation tasks' test split (about half the cost when the
    validation bank is as large as the transfer one); the verdict is on the transfer tasks either way.
    ``tuning`` (an ``evaluators.TUNING_PRESETS`` name) replaces the campaign's lr x wd grid and halving
    for every rule and baseline alike; the record's ``tuning`` says which protocol scored it."""
    if tuning is not None and tuning not in TUNING_PRESETS:
        raise VerifyError(f"tuning {tuning!r}: not a tuning preset; choose one of {sorted(TUNING_PRESETS)}")
    view = RunView(run)
    try:
        if view.kind != "rule":
            raise VerifyError(f"{view.run_dir}: verify re-scores update rules; this run's kind is {view.kind!r}")
        c = Campaign.model_validate(view.campaign)
        ranked = view.ranked()
        if not ranked:
            raise VerifyError(f"{view.run_dir}: no evaluated candidate to verify (has the run started?)")
        k = top or c.verify.top
        kind = RuleKind()
        rows = ranked[:k]
        val_tasks = validation_tasks(c) if validation else []
        xfer = transfer_tasks(c, tasks)
        used_seeds = set(c.eval_seeds or RuleEvalConfig.model_fields["seeds"].default_factory())
        if seeds is None:
            seeds = list(c.verify.seeds or [s for s in range(max(used_seeds) + 1, max(used_seeds) + 100)
                                            if s not in used_seeds][:DEFAULT_SEEDS])
        overlap = sorted(set(seeds) & used_seeds)
        if overlap:
            raise VerifyError(f"--seeds: {overlap} trained the search; verify uses seeds the search never saw")
        fid = fidelity or c.verify.fidelity or c.validation.fidelity or (view.fidelities[-1] if view.fidelities
                                                                          else "small")
        used = set(search_tasks(c))
        leaked = sorted(set(xfer) & used)
        if leaked:
            raise VerifyError(f"--tasks: {leaked} are search tasks; transfer tasks must be outside the search")
        all_tasks = list(dict.fromkeys(val_tasks + xfer))
        if not all_tasks:
            raise VerifyError("no validation or transfer tasks to verify on (give --tasks)")
        group = {t: "validation" for t in val_tasks} | {t: "transfer" for t in xfer}
        d = eval_config_dict(c, None)
        c_baseline = d.get("baseline", "adamw")   # the campaign's own: its record is meta.verify
        if baseline is not None:
            d["baseline"] = baseline
        if tuning is not None:
            d = with_tuning_preset(d, tuning)
        d.update(tasks=all_tasks, seeds=seeds, split="test",
                 cache_dir=str(cache_dir or Path(view.run_dir) / "eval_cache_verify"))
        if executor:
            d["executor"] = executor
        cfg = RuleEvalConfig.model_validate(d)
        entries: list[dict[str, Any]] = []
        for rank, row in enumerate(rows, 1):
            fr = row["results"].get(view.fidelities[row["level"]]) if row["level"] >= 0 else None
            v = row.get("validation")
            entries.append({"id": row["id"], "rank": rank, "label": f"#{row['id']}", "kind": "candidate",
                            "text": _row_text(row, kind.simplify_exact),
                            "search": row["score"] if fr is not None else None,
                            "search_won": fr.tasks_won if fr is not None else None,
                            "search_n": fr.tasks_scored if fr is not None else None,
                            "validation": None if v is None or v.status != Status.ok else v.score,
                            "validation_won": v.tasks_won if v is not None else None,
                            "validation_n": v.tasks_scored if v is not None else None})
        if with_seeds:
            base = Path(c.source_path).parent if c.source_path else None
            for s in c.seed_rules:
                try:
                    label, text = rule_text(s, base)
                except ValueError:
                    continue
                entries.append({"id": None, "rank": None, "label": f"seed {label}", "kind": "seed",
                                "text": kind.normalize(text), "search": None, "validation": None})
        log(f"verify {view.run_dir}: {len(entries)} rule(s) on {len(all_tasks)} task(s) "
            f"({', '.join(all_tasks)}), test split, seeds {seeds}, fidelity {fid}, "
            f"tuning {tuning or 'as the campaign'}")
        t0 = time.time()
        ev = RuleEvaluator(cfg)
        try:
            results = ev.evaluate([Candidate(kind="rule", text=e["text"]) for e in entries], fid)
            log(f"noise floors: tuned {cfg.baseline} vs itself on {noise_replicates} pairs of disjoint sets of "
                f"{len(seeds)} seeds per task")
            try:
                floors = {t: f.floor for t, f in noise_floors(ev, fid, all_tasks, replicates=noise_replicates).items()}
            except NoiseError as err:
                log(f"warning: {err}; verdicts use each task's own interval instead")
                floors = {}
        finally:
            ev.close()
        verdict_tasks = xfer or val_tasks
        for e, r in zip(entries, results):
            est = _estimate(r, verdict_tasks, floors, cfg.clip, task_aggregate(c))   # bank runs: iqm
            cells = _task_cells(r, group, floors, cfg.clip, est)
            e["tasks"] = cells
            e["status"] = str(r.status.value)
            for grp, key in (("validation", "validation_test"), ("transfer", "verified")):
                sc = [x["score"] for x in cells.values() if x["group"] == grp and x["score"] is not None]
                failed = any(x["group"] == grp and x["score"] is None for x in cells.values())
                e[key] = WORST_SCORE if failed else _mean(sc)
                e[key + "_won"] = sum(1 for x in sc if x > 0)
                e[key + "_n"] = sum(1 for x in cells.values() if x["group"] == grp)
            if not xfer:   # no transfer tasks: the validation tasks' test split is what is verified
                e["verified"], e["verified_won"], e["verified_n"] = (e["validation_test"], e["validation_test_won"],
                                                                     e["validation_test_n"])
            e["estimate"] = est.to_json() if est is not None else None
            if est is not None:   # the verified score is the estimate's (its aggregate: mean, or iqm on a bank)
                e["verified"] = est.score
            e["ci"] = list(est.ci) if est is not None else None
            e["p_improvement"] = est.p_improvement if est is not None else None
            e["verdict"] = est.verdict if est is not None else ("worse" if r.status == Status.diverged else "failed")
            e["describe"] = (describe(est, baseline_name(cfg.baseline)) if est is not None else
                             f"{e['verdict']}: {r.status.value} ({r.reason})")
            e["holds"] = holds(e)
        rec = {"created": time.time(), "seconds": round(time.time() - t0, 1), "fidelity": fid, "seeds": seeds,
               "split": "test", "validation_tasks": val_tasks, "transfer_tasks": xfer,
               "verdict_tasks": verdict_tasks, "noise": floors, "noise_replicates": noise_replicates,
               "baseline": cfg.baseline, "tuning": tuning or "campaign",
               "search_tasks": search_tasks(c), "config_hash": cfg.result_hash(), "entries": entries}
    finally:
        view.close()
    store = RunStore(db_path(run))
    try:
        if baseline is None or baseline == c_baseline:
            store.set_meta(verify=rec)
        else:
            store.set_meta(verify_vs={**(store.get_meta("verify_vs") or {}), baseline: rec})
        store.add_event("verify", f"verified top {k} on {len(all_tasks)} task(s) against "
                        f"{baseline_name(rec['baseline'])}",
                        {"best": entries[0]["id"], "verified": entries[0]["verified"], "baseline": rec["baseline"]})
    finally:
        store.close()
    return rec


def _cell(x: float | None) -> str:
    """A score cell of the text table: "-" and "failed" padded to a score's width (7)."""
    s = fmt_score(x, "-")
    return f"{s:^7}" if x is None or x <= WORST_SCORE else s


def _ci_cell(ci) -> str:
    return "-" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def verdict(rec: dict[str, Any]) -> str:
    """One plain sentence on the run's winner (rank 1): how it does on its validation tasks' test split,
    then its verdict on the verified tasks in the ``evaluators.describe`` wording."""
    e = next((x for x in rec["entries"] if x["kind"] == "candidate"), None)
    if e is None:
        return "no candidate was verified"
    n, won, m = e.get("validation_test_n", 0), e.get("validation_test_won", 0), e.get("validation_test")
    base = baseline_name(rec.get("baseline", "adamw"))
    if n and 2 * won > n:
        head = (f"winner {e['label']} beats {base} on {won} of its {n} validation tasks on the test split "
                f"(mean {fmt_score(m, '-')})")
    elif n:
        head = (f"this run found no rule that beats {base} on most of its validation tasks on the test "
                f"split: its winner {e['label']} wins {won} of {n} (mean {fmt_score(m, '-')})")
    else:
        head = f"winner {e['label']}"
    where = (f"the {len(rec['transfer_tasks'])} transfer tasks" if rec["transfer_tasks"]
             else "its validation tasks' test split")
    if e.get("describe"):
        return head + f"; on {where}: {e['describe']}"
    if rec["transfer_tasks"]:   # stored before verdicts had intervals
        head += (f"; on the {len(rec['transfer_tasks'])} transfer tasks it scores {fmt_score(e.get('verified'), '-')} "
                 f"and wins {e.get('verified_won')}: " + ("it holds" if e.get("holds") else "it does NOT hold")
                 + " (no interval: verified before intervals existed; verify again)")
    return head


def verify_table(rec: dict[str, Any]) -> list[str]:
    """The stored verification as text: per rule the three scores side by side with the verified interval
    and verdict, then per task (score, seed interval, noise floor). Old records show "-"."""
    noise = rec.get("noise") or {}
    base = rec.get("baseline", "adamw")
    short = "AdamW" if base == "adamw" else base
    out = [f"verified against {baseline_name(base)} on the test split, unseen seeds {rec['seeds']}, "
           f"fidelity {rec['fidelity']}"
           + (f", tuning preset {rec['tuning']!r}" if rec.get("tuning", "campaign") != "campaign" else "") + "; "
           f"validation tasks: {', '.join(rec['validation_tasks']) or '-'}; transfer tasks (never used by the "
           f"search or the validation): {', '.join(rec['transfer_tasks']) or '-'}",
           f"{'rule':<22} {'search':>8} {'won':>5}  {'validation':>10} {'won':>5}  {'val (test)':>10} {'won':>5}  "
           f"{'VERIFIED':>9} {'95% CI':>18} {'won':>5}  verdict"]
    for e in rec["entries"]:
        v = e.get("verdict")
        if v is None:
            flag = "" if e["kind"] == "seed" else ("yes" if e.get("holds") else "NO: does not hold")
        else:
            flag = {"holds": "holds", "worse": f"worse than {short}", "indistinguishable": "indistinguishable "
                    f"from {short}"}.get(v, v)
            if e["kind"] != "seed" and v != "holds":
                flag += " (does not hold)"
        out.append(f"{e['label']:<22} {_cell(e.get('search')):>8} {fmt_won(e, 'search'):>5}  "
                   f"{_cell(e.get('validation')):>10} {fmt_won(e, 'validation'):>5}  "
                   f"{_cell(e.get('validation_test')):>10} {fmt_won(e, 'validation_test'):>5}  "
                   f"{_cell(e.get('verified')):>9} {_ci_cell(e.get('ci')):>18} {fmt_won(e, 'verified'):>5}  {flag}")
    out.append(f"per task (score = clipped log({baseline_name(base)} metric / tuned rule metric) [seed interval]; "
               f"tuned lr / wd, rule vs {short}; noise floors: "
               + (", ".join(f"{t} {x:.3f}" for t, x in noise.items()) if noise else "-") + "):")
    tasks = list(rec["entries"][0]["tasks"]) if rec["entries"] else []
    for e in rec["entries"]:
        cells = []
        for t in tasks:
            x = e["tasks"].get(t, {})
            lr = f"{x['lr']:.2g}" if x.get("lr") else "-"
            wd = f"/{x['wd']:.2g}" if x.get("wd") is not None else ""
            blr = f"{x['baseline_lr']:.2g}" if x.get("baseline_lr") else "-"
            bwd = f"/{x['baseline_wd']:.2g}" if x.get("baseline_wd") is not None else ""
            ci = f" {_ci_cell(x.get('ci'))}" if x.get("ci") else ""
            cells.append(f"{t} {fmt_score(x.get('score'), '-')}{ci} ({lr}{wd} vs {blr}{bwd})")
        out.append(f"  {e['label']}: " + "; ".join(cells))
    return out


def verify_json(rec: dict[str, Any]) -> dict[str, Any]:
    """``verify --json``: the top candidate's estimate (score, ci, p_improvement, verdict, tasks with
    score / ci / noise) at the top level, and the whole record (all entries) under ``record``."""
    e = next((x for x in rec["entries"] if x["kind"] == "candidate"), None)
    est = (e or {}).get("estimate") or {"score": (e or {}).get("verified"), "ci": None, "p_improvement": None,
                                        "verdict": (e or {}).get("verdict"), "tasks": {}}
    tasks = {}
    for t, cell in ((e or {}).get("tasks") or {}).items():
        tasks[t] = {"group": cell.get("group"), "score": cell.get("score"), "ci": cell.get("ci"),
                    "noise": cell.get("noise"), "status": cell.get("status"), **est.get("tasks", {}).get(t, {})}
    return {**est, "tasks": tasks, "label": (e or {}).get("label"), "id": (e or {}).get("id"),
            "describe": (e or {}).get("describe"), "verdict_tasks": rec.get("verdict_tasks"),
            "entries": rec["entries"], "record": {k: v for k, v in rec.items() if k != "entries"}}


__all__ = ["VerifyError", "verify_run", "verify_table", "verify_json", "verdict", "holds", "DEFAULT_SEEDS"]
