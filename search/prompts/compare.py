"""Several prompt runs side by side: ``optforge show RUN RUN ...`` and ``optforge report RUN RUN ...``.

One prompt run optimizes one task with one algorithm. Comparing optimizers (GA, DE, OPRO,
rewrite) or tasks means reading several runs: for each, the held-out test accuracy of the
initial prompt and of the best prompt (by dev), the proposer calls and task-model requests
it used, and its score over iterations. The iteration axis is *proposer calls* (the budget
the algorithms share), so curves of different optimizers are comparable: the value after
call k is the best dev accuracy among the prompts proposed by the first k calls (and the
seed prompts, at k = 0). Everything here reads the run stores only; nothing is re-scored.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluators.base import Status
from search.core import RunView
from search.report.figures import png


class CompareError(ValueError):
    """A run that cannot take part in a prompt comparison (the message says why)."""


def calls_curve(view: RunView, fidelity: str = "dev") -> list[tuple[int, float | None]]:
    """(proposer calls so far, best ``fidelity`` score so far) after each candidate, in creation order.

    A call counts from the candidate it produced on (calls without a candidate count at once).
    ``None`` until some prompt has a score at ``fidelity``.
    """
    calls = view.store.llm_calls()
    cids = sorted(c["candidate_id"] for c in calls if c["candidate_id"] is not None)
    loose = sum(1 for c in calls if c["candidate_id"] is None)
    out: list[tuple[int, float | None]] = []
    best: float | None = None
    k = 0
    for c in sorted(view.all, key=lambda x: x["id"]):
        while k < len(cids) and cids[k] <= c["id"]:
            k += 1
        r = c.get("results", {}).get(fidelity)
        if r is not None and r.status == Status.ok:
            best = r.score if best is None else max(best, r.score)
        out.append((k + loose, best))
    return out


def run_row(view: RunView) -> dict[str, Any]:
    """One prompt run summarized (raises CompareError for a run that is not a prompt run)."""
    if view.kind != "prompt":
        raise CompareError(f"{view.run_dir}: a {view.kind!r} run; only prompt runs can be compared "
                           "(give one run to see it alone)")
    fin = view.store.get_meta("prompt_final") or {}
    camp = view.campaign.get("prompt") or {}
    best, ini = fin.get("best") or {}, fin.get("initial") or {}
    calls = view.store.llm_calls()
    llm_props = [x for x in view.all if x["meta"].get("llm")]
    return {
        "run": str(view.run_dir), "name": view.campaign.get("name"), "status": view.status,
        "task": fin.get("task") or camp.get("task") or camp.get("task_file"),
        "algorithm": fin.get("algorithm") or camp.get("algorithm", "ga"), "metric": fin.get("metric"),
        "initial_test": ini.get("test"), "best_test": best.get("test"), "best_dev": best.get("dev"),
        "initial_test_normalized": ini.get("test_normalized"), "best_test_normalized": best.get("test_normalized"),
        "initial_prompt": ini.get("text"), "best_prompt": best.get("text"), "best_id": best.get("id"),
        "best_operator": best.get("operator"), "proposer_calls": len(calls),
        "proposals": len(llm_props), "valid": sum(1 for x in llm_props if x["state"] == "ok"),
        "task_requests": fin.get("task_model_requests"), "wall_s": float(view.store.get_meta("wall", 0.0) or 0.0),
        "finished": bool(fin), "curve": calls_curve(view),
    }


def load_rows(runs: Sequence[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        view = RunView(r)
        try:
            rows.append(run_row(view))
        finally:
            view.close()
    return rows


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _delta(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{100 * (b - a):+.1f}"


HEADER = ["task", "metric", "algorithm", "initial test %", "best test %", "change", "best dev %",
          "proposer calls (valid/proposals)", "task-model requests", "wall s", "best prompt"]


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The comparison table, ordered by task then algorithm as given."""
    order = {t: k for k, t in enumerate(dict.fromkeys(r["task"] for r in rows))}
    out = []
    for r in sorted(rows, key=lambda r: order[r["task"]]):
        best = r["best_prompt"] if r["finished"] else "(not finished: no test scores yet)"
        out.append([str(r["task"]), str(r["metric"]), str(r["algorithm"]), _pct(r["initial_test"]),
                    _pct(r["best_test"]), _delta(r["initial_test"], r["best_test"]), _pct(r["best_dev"]),
                    f"{r['proposer_calls']} ({r['valid']}/{r['proposals']})", str(r["task_requests"] or 0),
                    f"{r['wall_s']:.0f}", str(best)])
    return out


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for t in table_rows(rows):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in t) + " |")
    return "\n".join(lines)


def compare_text(runs: Sequence[str | Path]) -> str:
    """``optforge show RUN RUN ...``: the held-out test table and each optimizer's best dev score by calls."""
    rows = load_rows(runs)
    out = ["held-out test accuracy, initial prompt vs best prompt (by dev), per task and optimizer:", "",
           markdown_table(rows), "", "best dev accuracy (%) after k proposer calls:"]
    for r in rows:
        pts = _thin(r["curve"])
        out.append(f"  {r['task']:<14} {r['algorithm']:<8} " + "  ".join(f"{k}:{_pct(v)}" for k, v in pts))
    return "\n".join(out)


def _thin(curve: list[tuple[int, float | None]]) -> list[tuple[int, float | None]]:
    """The last value at each call count."""
    last: dict[int, float | None] = {}
    for k, v in curve:
        last[k] = v
    return sorted(last.items())


def plot_curves(rows: Sequence[dict[str, Any]]):
    """One panel per task: best dev accuracy over proposer calls, one line per optimizer."""
    import matplotlib  # lazy: ~0.4 s of import, only where a figure is drawn (see search.report.figures)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for r in rows:
            pts = [(k, v) for k, v in _thin(r["curve"]) if v is not None]
            if r["task"] == t and pts:
                ax.step([k for k, _ in pts], [100 * v for _, v in pts], where="post", label=r["algorithm"])
        ax.set_title(str(t))
        ax.set_xlabel("proposer calls")
        ax.set_ylabel("best dev accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_compare_report(runs: Sequence[str | Path], out: str | Path) -> Path:
    """``optforge report RUN RUN ...``: one HTML file with the table and the per-task curves."""
    rows = load_rows(runs)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in t) + "</tr>" for t in table_rows(rows))
    runs_list = "".join(f"<li>{html.escape(r['run'])} ({html.escape(str(r['status']))})</li>" for r in rows)
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}")
    parts = ["<h1>optforge: prompt runs compared</h1>",
             "<h2>Held-out test accuracy: initial prompt vs best prompt (by dev)</h2>",
             f"<table><tr>{head}</tr>{body}</table>",
             "<h2>Best dev accuracy over proposer calls, per optimizer</h2>", png(plot_curves(rows)),
             f"<h2>Runs</h2><ul>{runs_list}</ul>"]
    path = Path(out)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
                    + "\n".join(parts) + "</body></html>", encoding="utf-8")
    return path
