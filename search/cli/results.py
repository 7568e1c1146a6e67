"""``optforge show | export | report RUN``: read a finished (or running) run.

- ``optforge show RUN``: summary, top candidates with simplified source, lineage of the best
  (and the kind's own lines: prompts show held-out test accuracy, initial vs best).
  ``optforge show RUN RUN ...`` compares prompt runs (search.prompts.compare).
- ``optforge export RUN --rank 1 -o file.py``: the chosen candidate as an artifact (rules: a
  standalone torch optimizer module of the simplified rule). Dispatch is by the run's kind
  (``KindPlugin.export``), so prompt runs write their own format.
- ``optforge report RUN [-o report.html]``: the HTML report with plots; several prompt runs give
  one comparison page (test table, best dev score over proposer calls per optimizer).

``RUN`` is a run directory, its ``run.sqlite``, or a campaign name under ``runs/``.
User errors raise ``CLIError`` (search.cli.errors: one message, exit status 1).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dsl
from evaluators import describe
from search.core import KindPlugin, RunView, UnknownKindError, did_you_mean, fmt_score, run_kind
from search.prompts import CompareError, compare_text, write_compare_report
from search.report import operator_lines, simplified_text, write_report

from .errors import CLIError
from .rundata import candidate_records, failure_reason, fmt_ci, invalid_groups, run_json, stored_estimate
from .transfer import verification_lines


def resolve_run(spec: str) -> Path:
    """A run directory from the command line: a path, its ``run.sqlite``, or a campaign name under ``runs/``."""
    p = Path(spec)
    for cand in (p, Path("runs") / spec):
        if (cand / "run.sqlite").is_file() or (cand.suffix == ".sqlite" and cand.is_file()):
            return cand
    runs = Path("runs")
    known = sorted(d.name for d in runs.iterdir() if (d / "run.sqlite").is_file()) if runs.is_dir() else []
    hint = did_you_mean(p.name, known)
    raise CLIError(f"{spec}: no run found{hint} (expected a run directory with run.sqlite, e.g. runs/demo; "
                   "start one with 'optforge run CAMPAIGN.toml')")


# -- show -----------------------------------------------------------------------------

def show_text(run: str | Path, top: int = 5) -> str:
    view = RunView(run)
    try:
        return _show(view, top)
    finally:
        view.close()


def _kind(view: RunView) -> KindPlugin:
    """The run's kind plugin (its plug-in modules imported from the stored campaign)."""
    try:
        return run_kind(view)
    except (UnknownKindError, ImportError) as e:
        raise CLIError(f"{view.run_dir}: cannot load the run's kind {view.kind!r} ({e}); the module that "
                       "registers it must be importable (list it in the campaign's plugins)") from None


def _score_cell(score: float | None, ci: list | None, failure: str | None = None) -> str:
    """``+0.3660 [+0.301, +0.412]``; a failed evaluation says why instead of "failed"."""
    if failure is not None:
        return f"failed ({failure})"
    return fmt_score(score, "-") + (f" {fmt_ci(ci)}" if ci else "")


def _validation_line(rec: dict) -> list[str]:
    if rec["validation_tasks"] is None:
        return []
    if rec["validation_failure"] is not None:
        return [f"    validation failed: {rec['validation_failure']}"]
    if rec["validation_verdict"]:
        return [f"    validation: {rec['validation_verdict']}"]
    return [f"    validation {_score_cell(rec['validation'], rec['validation_ci'])} ({rec['validation_won']}/"
            f"{rec['validation_tasks']} tasks won vs tuned AdamW)"]


def _verdict_lines(view: RunView) -> list[str]:
    """Each verified rule's verdict in the one wording (``evaluators.describe``); runs verified before
    verdicts were stored have none."""
    rec = view.verification()
    out = []
    for e in (rec or {}).get("entries", []):
        est = stored_estimate(e.get("estimate"))
        if e.get("describe") or est is not None:   # the stored wording names the run's own baseline
            out.append(f"  {e['label']}: {e.get('describe') or describe(est)}")
    return ["verdicts (verified tasks, test split, unseen seeds):"] + out if out else []


def _show(view: RunView, top: int) -> str:
    kind = _kind(view)
    c = view.campaign
    out = []
    states = Counter(x["state"] for x in view.all)
    used = sum(e["cost"] for e in view.evaluations)
    llm = view.store.llm_calls()
    llm_props = [x for x in view.all if x["meta"].get("llm") or x["operator"].startswith("llm_")]
    llm_ok = sum(1 for x in llm_props if x["state"] == "ok")
    out.append(f"run {view.run_dir}  campaign {c.get('name')!r}  kind {view.kind}  status {view.status}")
    out.append(f"budget: {used:g} / {c.get('budget', {}).get('evaluations')} units; evaluations: "
               f"{sum(e['phase'] == 'search' for e in view.evaluations)} search + "
               f"{sum(e['phase'] == 'simplify' for e in view.evaluations)} simplify; wall "
               f"{view.store.get_meta('wall', 0.0):.0f} s")
    out.append(f"candidates: {states['ok']} evaluated, {states['invalid']} invalid, {states['duplicate']} "
               f"duplicate (LLM), {states['simplify']} simplification tries; fidelities "
               f"{', '.join(view.fidelities)}")
    if llm:
        out.append(f"LLM: {len(llm)} calls, {sum(1 for x in llm if x['error'])} errors; proposals "
                   f"{len(llm_props)}, valid {llm_ok}")
    groups = invalid_groups(view)
    if groups:
        out.append("invalid proposals by reason:")
        out.extend(f"  {n:>4} x {r}" for r, n in groups[:8])
        if len(groups) > 8:
            out.append(f"  ... and {len(groups) - 8} more reason(s) (optforge show --json lists them all)")
    out.extend(operator_lines(view))
    ranked = view.ranked()
    records = candidate_records(view, kind, top)
    out.append("")
    what = kind.score_label
    out.append(f"top {min(top, len(ranked))} (validated first, by validation score; then by highest fidelity "
               f"reached, then {what}; within noise, more net wins (won minus lost), then the smaller program; "
               f"[95% bootstrap interval over tasks and seeds]):")
    for rec, x in zip(records, ranked):
        per = ", ".join(f"{t} {_score_cell(d['score'], d['ci'], d['failure'])}" + (f" lr {d['lr']:.2g}" if d["lr"]
                                                                                     else "")
                        for t, d in rec["per_task"].items())
        seed = f" seed {rec['seed']}" if rec["seed"] else ""
        out.append(f"#{rec['rank']}  id {rec['id']}  {rec['fidelity']}  score "
                   f"{_score_cell(rec['score'], rec['ci'], rec['failure'])}  op {rec['operator']}{seed}"
                   f"  size {rec['size'] if rec['size'] is not None else '?'}")
        if per:
            out.append(f"    per task: {per}")
        out.extend(_validation_line(rec))
        simp = x["meta"].get("simplified")
        if simp:
            out.append(f"    simplified (empirically, score {fmt_score(simp['score'])} at {simp['fidelity']}, "
                       f"{len(simp['steps'])} step(s)):")
        out.extend("    " + ln for ln in rec["text"].rstrip().splitlines())
    if ranked:
        out.append("")
        out.append("lineage of the best (first parents back to a seed):")
        for x in view.lineage(ranked[0]["id"]):
            par = ",".join(f"#{p}" for p in x["parents"]) or "-"
            out.append(f"  #{x['id']:<5} {x['operator']:<16} score {fmt_score(x['score'])}  parents {par}")
    out.extend(verification_lines(view))
    out.extend(_verdict_lines(view))
    extra = kind.show_lines(view)
    if extra:  # kind-specific lines (prompts: held-out test accuracy, initial vs best)
        out.append("")
        out.extend(extra)
    return "\n".join(out)


def show_json(run: str | Path, top: int | None = None) -> dict:
    """``optforge show RUN --json``: one JSON object (search.cli.rundata.run_json)."""
    view = RunView(run)
    try:
        return run_json(view, _kind(view), top)
    finally:
        view.close()


def cmd_show(args: argparse.Namespace) -> int:
    args.top_given = args.top is not None
    args.top = 5 if args.top is None else args.top
    runs = [resolve_run(r) for r in args.run]
    if len(runs) > 1:  # several prompt runs side by side (search.prompts.compare)
        try:
            print(compare_text(runs))
        except CompareError as e:
            raise CLIError(str(e)) from None
        return 0
    if args.json:
        print(json.dumps(show_json(runs[0], args.top if args.top_given else None), indent=1, default=str))
        return 0
    print(show_text(runs[0], args.top))
    return 0


# -- export ---------------------------------------------------------------------------

def writable_output(out: str | Path, flag: str = "-o") -> Path:
    """``out`` as a path whose folder exists (a ``CLIError`` that says so, before any work)."""
    p = Path(out)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise CLIError(f"{flag} {out}: is a directory; give a file name, e.g. {p / 'best_rule.py'}")
    if not parent.is_dir():
        raise CLIError(f"{flag} {out}: the folder {parent} does not exist; create it first (mkdir -p {parent}) "
                       "or write elsewhere")
    return p


def export_warnings(view: RunView, x: dict) -> list[str]:
    """What a user should know before using an exported candidate: it is an unchanged seed, it never got
    past the cheapest fidelity, it scores below tuned AdamW, or it lost (or failed) validation."""
    out = []
    rules = view.kind == "rule"   # scores against tuned AdamW (0 = as good); other kinds score otherwise
    if x["operator"] == "seed":
        what = "seed rule" if rules else "seed"
        out.append(f"this is the unchanged {what} {x['meta'].get('seed', '#' + str(x['id']))!r} (what the "
                   "search started from, not something it found)")
    if len(view.fidelities) > 1 and x["level"] == 0:
        out.append(f"it was only screened at the cheapest fidelity ({view.fidelities[0]}), never promoted")
    if rules and x["score"] < 0:
        out.append(f"its search score {fmt_score(x['score'])} is below tuned AdamW (0)")
    v = x.get("validation")
    if v is not None:
        if v.status.value != "ok":
            out.append(f"it failed validation ({failure_reason(v)})")
        elif rules and (v.score < 0 or 2 * v.tasks_won <= v.tasks_scored):
            out.append(f"it loses validation: {fmt_score(v.score)}, {v.tasks_won}/{v.tasks_scored} tasks won "
                       "vs tuned AdamW")
    return out


@dataclass
class Exported:
    """What ``export_run`` wrote, and what to tell the user about it."""
    path: Path
    class_name: str
    candidate: int
    kind: str
    warnings: list[str] = field(default_factory=list)
    lr: float | None = None       # a tuned learning rate to start from (the median over its tasks)


def export_run(run: str | Path, rank: int, out: str | Path, class_name: str | None = None) -> Path:
    """Write the candidate at ``rank`` (see :func:`export_candidate`); returns the file written."""
    return export_candidate(run, rank, out, class_name).path


def export_candidate(run: str | Path, rank: int, out: str | Path, class_name: str | None = None, *,
                     flag: str = "-o") -> Exported:
    """Write the candidate at ``rank`` of the final ranking (rank 1: the one the run settled on);
    ``flag`` names the output argument in messages."""
    out = writable_output(out, flag)
    if class_name is not None and not class_name.isidentifier():
        raise CLIError(f"--class-name {class_name!r} is not a valid Python class name")
    view = RunView(run)
    try:
        ranked = view.ranked()
        if not ranked:
            raise CLIError(f"{view.run_dir}: no evaluated candidate to export yet (has the run started?)")
        if not 1 <= rank <= len(ranked):
            raise CLIError(f"--rank {rank}: out of range; this run has {len(ranked)} ranked candidate(s): give "
                           f"--rank 1..{len(ranked)} (optforge show {view.run_dir} --top {len(ranked)} lists them)")
        x = ranked[rank - 1]
        kind = _kind(view)
        chosen = kind.selected_id(view) if rank == 1 else None
        if chosen is not None and chosen != x["id"]:   # e.g. a prompt run that kept its initial prompt
            x = next((c for c in ranked if c["id"] == chosen), x)
        text = simplified_text(kind, x)
        fid = view.fidelities[x["level"]]
        info = {"run": str(view.run_dir), "candidate": x["id"], "rank": rank, "fidelity": fid,
                "score": x["score"], "operator": x["operator"]}
        info.update(kind.export_info(view, x, fid))
        name = class_name or dsl.class_name(f"{view.campaign.get('name', 'run')}_rank{rank}")
        try:
            kind.export(text, out, name=name, info=info)
        except OSError as e:
            raise CLIError(f"cannot write {out}: {e.strerror or e}") from None
        lrs = sorted(tr.best_lr for tr in x["results"][fid].tasks.values() if tr.best_lr)
        return Exported(out, name, x["id"], view.kind, export_warnings(view, x), lrs[len(lrs) // 2] if lrs else None)
    finally:
        view.close()


def cmd_export(args: argparse.Namespace) -> int:
    ex = export_candidate(resolve_run(args.run), args.rank, args.output, args.class_name)
    for w in ex.warnings:
        print(f"warning: candidate #{ex.candidate}: {w}", file=sys.stderr)
    if ex.kind == "rule" and ex.path.suffix == ".py":
        print(f"wrote {ex.path}: class {ex.class_name} (candidate #{ex.candidate}); use it like any torch "
              f"optimizer: from {ex.path.stem} import {ex.class_name}; "
              f"opt = {ex.class_name}(model.parameters(), lr={ex.lr or 1e-3:.3g})")
    else:
        print(f"wrote {ex.path} (candidate #{ex.candidate})")
    return 0


# -- report ---------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    runs = [resolve_run(r) for r in args.run]
    if len(runs) > 1:  # several prompt runs: test table and score over proposer calls per optimizer
        out = writable_output(args.output) if args.output else Path(runs[0]).parent / "prompt_comparison.html"
        try:
            p = write_compare_report(runs, out)
        except CompareError as e:
            raise CLIError(str(e)) from None
        print(f"wrote {p}")
        return 0
    if args.output is not None:
        writable_output(args.output)
    try:
        p = write_report(runs[0], args.output, args.top, args.plotly_js)
    except (UnknownKindError, ImportError) as e:
        raise CLIError(f"{runs[0]}: cannot load the run's kind ({e}); the module that registers it must be "
                       "importable (list it in the campaign's plugins)") from None
    print(f"wrote {p}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("show", help="summary, top candidates and lineage of a run (several prompt runs: "
                       "compared side by side)")
    p.add_argument("run", nargs="+", help="run directory (e.g. runs/demo) or campaign name")
    p.add_argument("--top", type=int, default=None, help="candidates to list (default 5; --json: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object: candidates with scores and "
                   "intervals, verification, operator statistics")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write the chosen candidate (rules: a standalone optimizer module)")
    p.add_argument("run")
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--class-name", default=None, help="class name of the exported optimizer")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write an HTML report with plots (several prompt runs: one comparison)")
    p.add_argument("run", nargs="+")
    p.add_argument("-o", "--output", default=None, help="default: <run>/report.html (several runs: "
                   "prompt_comparison.html next to the first run)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--plotly-js", choices=("inline", "file"), default="inline",
                   help="embed plotly.js in the page (default, ~4.6 MB) or write plotly.min.js next to it")
    p.set_defaults(func=cmd_report)
