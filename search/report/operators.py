"""Per-operator statistics of a run for ``optforge show`` and the HTML report: children, valid,
improved, mean reward (improvement per second, or per unit with ``cost = "units"``) and the share
over time, from the operator bandit's checkpointed state (search.core.bandit; kept in every
mode, ``fixed`` included). Runs from before the bandit get the counts from their candidates."""
from __future__ import annotations

import html
from typing import Any

from evaluators.base import WORST_SCORE
from search.core import RunView, operator_table, share_points

from .figures import png


def _state(view: RunView) -> dict[str, Any] | None:
    ck = view.store.last_checkpoint()
    return (ck or {}).get("state", {}).get("operators")


def _from_candidates(view: RunView) -> list[dict[str, Any]]:
    """Counts for a run without bandit state: proposals by operator, valid, improved at screening."""
    screen = view.fidelities[0] if view.fidelities else None
    by: dict[str, dict[str, Any]] = {}
    for c in view.all:
        if c["operator"] in ("seed", "simplify") or c["state"] == "simplify":
            continue
        row = by.setdefault(c["operator"], {"operator": c["operator"], "children": 0, "valid": 0, "improved": 0,
                                            "mean_reward": None, "share": None, "series": []})
        row["children"] += 1
        if c["state"] != "ok":
            continue
        row["valid"] += 1
        mine = c.get("results", {}).get(screen)
        parents = [view.by_id[p].get("results", {}).get(screen) for p in c["parents"] if p in view.by_id]
        base = max((r.score for r in parents if r is not None and r.ok), default=WORST_SCORE)
        if mine is not None and mine.ok and base > WORST_SCORE and mine.score > base:
            row["improved"] += 1
    return [by[k] for k in sorted(by)]


def _children_shares(view: RunView, windows: int = 5) -> dict[str, list[float]]:
    """Per operator, its share of the children made in each of ``windows`` consecutive spans of
    generations (one generation's few children would make a noisy series)."""
    made = sorted((int(c["generation"]), c["operator"]) for c in view.all
                  if c["operator"] not in ("seed", "simplify") and c["state"] != "simplify")
    if not made:
        return {}
    lo, hi = made[0][0], made[-1][0]
    span = (hi - lo + 1) / min(windows, hi - lo + 1)
    counts: list[dict[str, int]] = [{} for _ in range(min(windows, hi - lo + 1))]
    for g, op in made:
        w = counts[min(len(counts) - 1, int((g - lo) / span))]
        w[op] = w.get(op, 0) + 1
    counts = [w for w in counts if w]
    return {o: [w.get(o, 0) / sum(w.values()) for w in counts] for o in sorted({o for _, o in made})}


def operator_rows(view: RunView) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(rows, bandit state or None) for a run. In ``fixed`` mode the shares shown are the children
    each operator actually made per generation: a strategy that names its own operators (the prompt
    algorithms) does not draw from the recorded mix, so the mix would misstate what ran."""
    state = _state(view)
    rows = operator_table(state)
    if rows and state.get("algorithm") == "fixed":
        realized = _children_shares(view)
        for r in rows:
            r["series"] = realized.get(r["operator"], [])
            r["share"] = r["series"][-1] if r["series"] else 0.0
    return (rows, state) if rows else (_from_candidates(view), None)


def _unit(state: dict[str, Any] | None) -> str:
    return "/unit" if state and state.get("cost") == "units" else "/s"


def operator_lines(view: RunView) -> list[str]:
    """The operator table as text lines (``optforge show``)."""
    rows, state = operator_rows(view)
    if not rows:
        return []
    alg = state["algorithm"] if state else "fixed (no bandit state: a run from before the operator bandit)"
    out = [f"operators ({alg}; reward = improvement over the best parent at screening, per "
           f"{'evaluation unit' if _unit(state) == '/unit' else 'second'}; share: first -> last generation):",
           f"  {'operator':<17}{'children':>9}{'valid':>7}{'improved':>9}{'mean reward':>14}  share"]
    for r in rows:
        mr = "n/a" if r["mean_reward"] is None else f"{r['mean_reward']:.3g}{_unit(state)}"
        pts = share_points(r["series"])
        share = " -> ".join(f"{100 * s:.0f}%" for s in pts) if pts else "n/a"
        out.append(f"  {r['operator']:<17}{r['children']:>9}{r['valid']:>7}{r['improved']:>9}{mr:>14}  {share}")
    return out


def plot_shares(state: dict[str, Any] | None) -> str | None:
    """Stacked operator shares per generation (an inline PNG), or None without history."""
    hist = (state or {}).get("history") or []
    if len(hist) < 2:
        return None
    import matplotlib.pyplot as plt  # lazy: ~0.4 s of import, only where a figure is drawn (see search.report.figures)
    names = sorted({k for _g, sh in hist for k in sh})
    gens = [g for g, _sh in hist]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.stackplot(gens, [[100 * sh.get(n, 0.0) for _g, sh in hist] for n in names], labels=names, step="post")
    ax.set_xlabel("generation")
    ax.set_ylabel("share of children (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return png(fig)


def operator_sections(view: RunView) -> list[str]:
    """The report's "Operator choice" section: the table and the shares over generations."""
    rows, state = operator_rows(view)
    if not rows:
        return []
    head = ["operator", "children", "valid", "improved", f"mean reward ({_unit(state)[1:]})", "share (last)"]
    body = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" for v in (
            html.escape(r["operator"]), r["children"], r["valid"], r["improved"],
            "n/a" if r["mean_reward"] is None else f"{r['mean_reward']:.3g}",
            "n/a" if r["share"] is None else f"{100 * r['share']:.1f}%")) + "</tr>" for r in rows)
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>"
    alg = html.escape(state["algorithm"]) if state else "fixed (run from before the operator bandit)"
    img = plot_shares(state) or ""
    return [f"<h2>Operator choice ({alg})</h2><p>Reward: a child's improvement over its best parent at the "
            "screening fidelity (0 for an invalid or duplicate proposal), per unit of cost.</p>" + table + img]
