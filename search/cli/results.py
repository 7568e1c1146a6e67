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
from collections import Counter
from pathlib import Path

from search.core import KindPlugin, RunView, UnknownKindError, fmt_score, run_kind
from search.prompts import CompareError, compare_text, write_compare_report
from search.report import operator_lines, simplified_text, write_report

from .errors import CLIError
from .transfer import validation_lines, verification_lines


def resolve_run(spec: str) -> Path:
    """A run directory from the command line: a path, its ``run.sqlite``, or a campaign name under ``runs/``."""
    p = Path(spec)
    for cand in (p, Path("runs") / spec):
        if (cand / "run.sqlite").is_file() or (cand.suffix == ".sqlite" and cand.is_file()):
            return cand
    raise CLIError(f"{spec}: no run found (expected a run directory with run.sqlite, e.g. runs/demo; "
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
    reasons = Counter(x["reason"].split(":")[0][:60] for x in view.all if x["state"] == "invalid")
    if reasons:
        out.append("invalid reasons: " + "; ".join(f"{r} x{n}" for r, n in reasons.most_common(5)))
    out.extend(operator_lines(view))
    ranked = view.ranked()
    out.append("")
    what = kind.score_label
    out.append(f"top {min(top, len(ranked))} (validated first, by validation score; then by highest fidelity "
               f"reached, then {what}; within noise, more tasks won, then the smaller program):")
    for rank, x in enumerate(ranked[:top], 1):
        fid = view.fidelities[x["level"]]
        r = x["results"][fid]
        per = ", ".join(f"{t} {fmt_score(tr.score)}" + (f" lr {tr.best_lr:.2g}" if tr.best_lr else "")
                        for t, tr in r.tasks.items())
        seed = f" seed {x['meta']['seed']}" if x["meta"].get("seed") else ""
        out.append(f"#{rank}  id {x['id']}  {fid}  score {fmt_score(x['score'])}  op {x['operator']}{seed}"
                   f"  size {x['meta'].get('size', '?')}")
        if per:
            out.append(f"    per task: {per}")
        out.extend(validation_lines(x))
        simp = x["meta"].get("simplified")
        if simp:
            out.append(f"    simplified (empirically, score {fmt_score(simp['score'])} at {simp['fidelity']}, "
                       f"{len(simp['steps'])} step(s)):")
        text = simplified_text(kind, x)
        out.extend("    " + ln for ln in text.rstrip().splitlines())
    if ranked:
        out.append("")
        out.append("lineage of the best (first parents back to a seed):")
        for x in view.lineage(ranked[0]["id"]):
            par = ",".join(f"#{p}" for p in x["parents"]) or "-"
            out.append(f"  #{x['id']:<5} {x['operator']:<16} score {fmt_score(x['score'])}  parents {par}")
    out.extend(verification_lines(view))
    extra = kind.show_lines(view)
    if extra:  # kind-specific lines (prompts: held-out test accuracy, initial vs best)
        out.append("")
        out.extend(extra)
    return "\n".join(out)


def cmd_show(args: argparse.Namespace) -> int:
    runs = [resolve_run(r) for r in args.run]
    if len(runs) > 1:  # several prompt runs side by side (search.prompts.compare)
        try:
            print(compare_text(runs))
        except CompareError as e:
            raise CLIError(str(e)) from None
        return 0
    print(show_text(runs[0], args.top))
    return 0


# -- export ---------------------------------------------------------------------------

def _class_name(name: str) -> str:
    s = "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_") if p)
    return s if s.isidentifier() else "DiscoveredOptimizer"


def export_run(run: str | Path, rank: int, out: str | Path, class_name: str | None = None) -> Path:
    view = RunView(run)
    try:
        ranked = view.ranked()
        if not 1 <= rank <= len(ranked):
            raise CLIError(f"--rank {rank}: the run has {len(ranked)} ranked candidate(s)")
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
        name = class_name or _class_name(f"{view.campaign.get('name', 'run')}_rank{rank}")
        out = Path(out)
        kind.export(text, out, name=name, info=info)
        return out
    finally:
        view.close()


def cmd_export(args: argparse.Namespace) -> int:
    p = export_run(resolve_run(args.run), args.rank, args.output, args.class_name)
    print(f"wrote {p}")
    return 0


# -- report ---------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    runs = [resolve_run(r) for r in args.run]
    if len(runs) > 1:  # several prompt runs: test table and score over proposer calls per optimizer
        out = args.output or Path(runs[0]).parent / "prompt_comparison.html"
        try:
            p = write_compare_report(runs, out)
        except CompareError as e:
            raise CLIError(str(e)) from None
        print(f"wrote {p}")
        return 0
    try:
        p = write_report(runs[0], args.output, args.top)
    except (UnknownKindError, ImportError) as e:
        raise CLIError(f"{runs[0]}: cannot load the run's kind ({e}); the module that registers it must be "
                       "importable (list it in the campaign's plugins)") from None
    print(f"wrote {p}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("show", help="summary, top candidates and lineage of a run (several prompt runs: "
                       "compared side by side)")
    p.add_argument("run", nargs="+", help="run directory (e.g. runs/demo) or campaign name")
    p.add_argument("--top", type=int, default=5)
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
    p.set_defaults(func=cmd_report)
