"""``optforge report RUN``: one self-contained HTML file (plots are base64 PNGs).

Sections: summary; best score over evaluations (per fidelity, running best and every
score); score distribution; Pareto front (score vs program size, colour = state tensors);
loss curves of the top rules vs tuned AdamW per task (from ``TaskResult.curve`` and
``extra['baseline_curve']``); the top candidates with their simplified source; the lineage
of the best; operator statistics. Other candidate kinds get the generic sections; a kind
plugin can add HTML through an optional ``report_sections(view) -> list[str]`` method.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

from evaluators.base import WORST_SCORE

from .store import RunView


def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _ok(score: float) -> bool:
    return score > WORST_SCORE and math.isfinite(score)


def plot_progress(view: RunView) -> str | None:
    import matplotlib.pyplot as plt
    evs = [e for e in view.evaluations if e["phase"] == "search"]
    if not evs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for f in view.fidelities:
        pts = [(k, e["score"]) for k, e in enumerate(evs) if e["fidelity"] == f and _ok(e["score"])]
        if not pts:
            continue
        xs, ys = zip(*pts)
        best, run = [], -math.inf
        for y in ys:
            run = max(run, y)
            best.append(run)
        sc = ax.scatter(xs, ys, s=8, alpha=0.35)
        ax.step(xs, best, where="post", color=sc.get_facecolor()[0][:3], label=f"best at {f}")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("evaluation #")
    ax.set_ylabel("score (vs tuned AdamW)" if view.kind == "rule" else "score")
    ax.legend(fontsize=8)
    ax.set_title("best score over evaluations")
    return _png(fig)


def plot_distribution(view: RunView) -> str | None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.2))
    any_ = False
    for f in view.fidelities:
        ys = [e["score"] for e in view.evaluations if e["fidelity"] == f and e["phase"] == "search"
              and _ok(e["score"])]
        if ys:
            any_ = True
            ax.hist(ys, bins=30, alpha=0.5, label=f"{f} ({len(ys)})")
    if not any_:
        import matplotlib.pyplot as plt2
        plt2.close(fig)
        return None
    n_fail = sum(1 for e in view.evaluations if not _ok(e["score"]))
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(f"score distribution (failed evaluations not shown: {n_fail})")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_pareto(view: RunView) -> str | None:
    import matplotlib.pyplot as plt

    from .strategies import pareto_front
    inds = [c for c in view.individuals if _ok(c["score"]) and "size" in c["meta"]]
    if not inds:
        return None
    top_level = max(c["level"] for c in inds)
    pts = [(c["score"], float(c["meta"]["size"]), float(c["meta"].get("n_state", 0))) for c in inds]
    front = set(pareto_front(pts, (1.0, -1.0, -1.0)))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sc = ax.scatter([p[1] for p in pts], [p[0] for p in pts], c=[p[2] for p in pts], cmap="viridis", s=14,
                    alpha=0.6)
    fx = sorted((pts[k][1], pts[k][0]) for k in front)
    ax.scatter([x for x, _ in fx], [y for _, y in fx], facecolors="none", edgecolors="red", s=60,
               label="Pareto front (score, size, states)")
    fig.colorbar(sc, ax=ax, label="state tensors")
    ax.set_xlabel("program size (expression nodes)")
    ax.set_ylabel("score at highest fidelity reached")
    ax.set_title(f"score vs size ({len(inds)} rules; top fidelity {view.fidelities[top_level]})")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_curves(view: RunView, k: int = 3) -> str | None:
    import matplotlib.pyplot as plt
    top = [c for c in view.ranked() if _ok(c["score"])][:k]
    if not top:
        return None
    fid = view.fidelities[top[0]["level"]]
    tasks = [t for t in top[0]["results"][fid].tasks]
    if not tasks:
        return None
    n = len(tasks)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.3 * rows), squeeze=False)
    drawn = False
    for ax, t in zip(axes.flat, tasks):
        base_done = False
        for c in top:
            r = c["results"].get(fid)
            tr = r.tasks.get(t) if r else None
            if tr is None or not tr.curve:
                continue
            steps = tr.extra.get("curve_steps") or list(range(len(tr.curve)))
            ax.plot(steps[: len(tr.curve)], tr.curve, label=f"#{c['id']} ({tr.score:+.3f}, lr {tr.best_lr:.2g})")
            drawn = True
            if not base_done and tr.extra.get("baseline_curve"):
                bs = tr.extra.get("baseline_curve_steps") or list(range(len(tr.extra["baseline_curve"])))
                ax.plot(bs[: len(tr.extra["baseline_curve"])], tr.extra["baseline_curve"], "k--",
                        label=f"tuned AdamW (lr {tr.extra.get('baseline_lr') or float('nan'):.2g})")
                base_done = True
        ax.set_title(f"{t} ({fid})")
        ax.set_xlabel("step")
        ax.set_ylabel(top[0]["results"][fid].tasks[t].metric_name)
        vals = [v for line in ax.get_lines() for v in line.get_ydata() if v > 0]
        if vals and max(vals) / max(min(vals), 1e-30) > 50:
            ax.set_yscale("log")
        if ax.get_lines():
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    return _png(fig)


def logbook_table(view: RunView) -> str | None:
    """Per-generation statistics of the screening scores (DEAP's Statistics and Logbook)."""
    import numpy as np
    from deap import tools
    if not view.fidelities:
        return None
    screen = view.fidelities[0]
    by_gen: dict[int, list[float]] = {}
    for e in view.evaluations:
        c = view.by_id.get(e["candidate_id"])
        if c is None or e["phase"] != "search" or e["fidelity"] != screen or not _ok(e["score"]):
            continue
        by_gen.setdefault(int(c["generation"]), []).append(float(e["score"]))
    if not by_gen:
        return None
    stats = tools.Statistics()
    for name, fn in (("max", np.max), ("mean", np.mean), ("min", np.min)):
        stats.register(name, fn)
    book = tools.Logbook()
    best = -math.inf
    gens = sorted(by_gen)
    step = max(1, len(gens) // 25)  # at most ~25 rows
    for k, g in enumerate(gens):
        best = max(best, max(by_gen[g]))
        if k % step == 0 or k == len(gens) - 1:
            book.record(gen=g, n=len(by_gen[g]), best_so_far=best, **stats.compile(by_gen[g]))
    rows = [[r["gen"], r["n"], f"{r['max']:+.4f}", f"{r['mean']:+.4f}", f"{r['min']:+.4f}", f"{r['best_so_far']:+.4f}"]
            for r in book]
    return _table(rows, ["generation", f"ok at {screen}", "max", "mean", "min", "best so far"])


def _simplified(view: RunView, c: dict) -> str:
    s = c["meta"].get("simplified")
    if s:
        return s["text"]
    if view.kind == "rule":
        try:
            import dsl
            return dsl.simplify(dsl.parse(c["text"])).source()
        except Exception:  # noqa: BLE001 - show the raw text instead
            return c["text"]
    return c["text"]


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _fmt(s: float) -> str:
    return "failed" if not _ok(s) else f"{s:+.4f}"


def build_html(view: RunView, top_n: int = 5) -> str:
    c = view.campaign
    ranked = view.ranked()
    used = sum(e["cost"] for e in view.evaluations)
    states = Counter(x["state"] for x in view.all)
    llm_calls = view.store.llm_calls()
    sections = [f"<h1>optforge run: {html.escape(str(c.get('name', '?')))}</h1>",
                _table([["kind", view.kind], ["status", view.status],
                        ["budget used", f"{used:g} / {c.get('budget', {}).get('evaluations')} units"],
                        ["evaluations (search / simplify)",
                         f"{sum(e['phase'] == 'search' for e in view.evaluations)} / "
                         f"{sum(e['phase'] == 'simplify' for e in view.evaluations)}"],
                        ["candidates (ok / invalid / duplicate / simplify)",
                         f"{states['ok']} / {states['invalid']} / {states['duplicate']} / {states['simplify']}"],
                        ["LLM calls", len(llm_calls)],
                        ["fidelities", ", ".join(view.fidelities)],
                        ["wall time", f"{view.store.get_meta('wall', 0.0):.0f} s"],
                        ["seed rules", ", ".join(c.get("seed_rules", []))]], ["", ""])]
    for title, fn in (("Best score over evaluations", plot_progress), ("Score distribution", plot_distribution),
                      ("Pareto front", plot_pareto), ("Loss curves: top rules vs tuned AdamW", plot_curves)):
        img = fn(view)
        if img:
            sections.append(f"<h2>{title}</h2>{img}")
    lb = logbook_table(view)
    if lb:
        sections.append("<h2>Per-generation statistics (screening fidelity)</h2>" + lb)
    rows = []
    for rank, x in enumerate(ranked[:top_n], 1):
        fid = view.fidelities[x["level"]]
        per = "<br>".join(f"{html.escape(t)}: {_fmt(tr.score)}" for t, tr in x["results"][fid].tasks.items())
        rows.append([rank, f"#{x['id']}", fid, _fmt(x["score"]), html.escape(x["operator"]), per,
                     f"<pre>{html.escape(_simplified(view, x))}</pre>"])
    sections.append("<h2>Top candidates</h2>" + _table(rows, ["rank", "id", "fidelity", "score", "operator",
                                                               "per task", "simplified"]))
    if ranked:
        lin = view.lineage(ranked[0]["id"])
        sections.append("<h2>Lineage of the best</h2>" + _table(
            [[f"#{x['id']}", html.escape(x["operator"]), _fmt(x.get("score", WORST_SCORE)),
              f"<pre>{html.escape(x['text'])}</pre>"] for x in lin], ["id", "operator", "score", "text"]))
    ops: dict[str, Counter] = {}
    for x in view.all:
        ops.setdefault(x["operator"], Counter())[x["state"]] += 1
    best_by_op: dict[str, float] = {}
    for x in view.individuals:
        best_by_op[x["operator"]] = max(best_by_op.get(x["operator"], WORST_SCORE), x["score"])
    sections.append("<h2>Operators</h2>" + _table(
        [[html.escape(o), n["ok"], n["invalid"], n["duplicate"], _fmt(best_by_op.get(o, WORST_SCORE))]
         for o, n in sorted(ops.items())], ["operator", "evaluated", "invalid", "duplicate", "best score"]))
    from .engine import get_kind
    try:
        plugin = get_kind(view.kind, missing_ok=True)
    except Exception:  # noqa: BLE001
        plugin = None
    extra = getattr(plugin, "report_sections", None)
    if extra is not None:
        sections.extend(extra(view))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}pre{margin:0}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           + "\n".join(sections) + "</body></html>"


def write_report(run: str | Path, out: str | Path | None = None, top_n: int = 5) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    view = RunView(run)
    try:
        path = Path(out) if out else view.run_dir / "report.html"
        path.write_text(build_html(view, top_n), encoding="utf-8")
        return path
    finally:
        view.close()
