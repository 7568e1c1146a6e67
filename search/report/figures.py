"""The report's figures, each returned as an inline ``<img>`` (``png``), or None when there is nothing to draw.

``matplotlib.pyplot`` is imported inside the functions that draw: it costs 0.3-0.46 s of
import (measured 2026-12-01 on the 2-core container, over the ~1 s torch + dsl import every
CLI verb pays), and only ``optforge report`` and plots need it.
"""
from __future__ import annotations

import base64
import io
import math

from evaluators.base import WORST_SCORE
from search.core import RunView
from search.core.strategies import pareto_front


def png(fig) -> str:
    """A matplotlib figure as an inline ``<img>`` (base64 PNG); closes the figure."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def ok_score(score: float) -> bool:
    """A score worth plotting: finite and above the failure marker."""
    return score > WORST_SCORE and math.isfinite(score)


def plot_progress(view: RunView, score_label: str = "score") -> str | None:
    import matplotlib.pyplot as plt
    evs = [e for e in view.evaluations if e["phase"] == "search"]
    if not evs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for f in view.fidelities:
        pts = [(k, e["score"]) for k, e in enumerate(evs) if e["fidelity"] == f and ok_score(e["score"])]
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
    ax.set_ylabel(score_label)
    ax.legend(fontsize=8)
    ax.set_title("best score over evaluations")
    return png(fig)


def plot_distribution(view: RunView) -> str | None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.2))
    any_ = False
    for f in view.fidelities:
        ys = [e["score"] for e in view.evaluations if e["fidelity"] == f and e["phase"] == "search"
              and ok_score(e["score"])]
        if ys:
            any_ = True
            ax.hist(ys, bins=30, alpha=0.5, label=f"{f} ({len(ys)})")
    if not any_:
        plt.close(fig)
        return None
    n_fail = sum(1 for e in view.evaluations if not ok_score(e["score"]))
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(f"score distribution (failed evaluations not shown: {n_fail})")
    ax.legend(fontsize=8)
    return png(fig)


def plot_pareto(view: RunView) -> str | None:
    import matplotlib.pyplot as plt
    inds = [c for c in view.individuals if ok_score(c["score"]) and "size" in c["meta"]]
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
    return png(fig)


def plot_curves(view: RunView, k: int = 3) -> str | None:
    import matplotlib.pyplot as plt
    top = [c for c in view.ranked() if ok_score(c["score"])][:k]
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
    return png(fig)
