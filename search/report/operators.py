"""One per-operator table for ``optforge show`` and the HTML report, with counts that add up.

Every count but one comes from the run's store (its candidate rows and their results), so the
table's totals are the store's counts:

- ``proposals = valid + invalid + duplicate``: each attempt an operator made (retries count);
- ``valid = trained ok + failed + not evaluated``: new, valid children (a failed one diverged,
  timed out or raised in training; "not evaluated": the budget ran out first);
- ``improved``: trained ok children that beat their best parent at the screening fidelity.

The one count the store lacks: a random operator's duplicate proposal is not stored (an LLM's is,
with its reply). The operator bandit counted every attempt (search.core.bandit; its state is in
every checkpoint, ``fixed`` mode included), so ``duplicate`` adds its surplus: the bandit's
attempts minus the stored proposals it saw (all but the unevaluated ones). The mean reward
(improvement over the best parent per second, or per unit with ``cost = "units"``) and the share
over time are the bandit's. Runs from before the bandit show stored counts only ("n/a").
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from evaluators.base import WORST_SCORE
from search.core import RunView, operator_table, share_points

from .figures import ok_score, to_div

#: Operators whose candidates are not search proposals (the seeds, the winners' simplification).
NOT_PROPOSED = ("seed", "simplify")


@dataclass
class OperatorRow:
    operator: str
    invalid: int = 0
    duplicate_stored: int = 0
    duplicate_unstored: int = 0     # random operators' duplicates, known from the bandit's count only
    trained_ok: int = 0
    failed: int = 0
    not_evaluated: int = 0
    improved: int = 0
    best: float = WORST_SCORE
    mean_reward: float | None = None
    share: float | None = None
    series: list[float] = field(default_factory=list)

    @property
    def duplicate(self) -> int:
        return self.duplicate_stored + self.duplicate_unstored

    @property
    def valid(self) -> int:
        return self.trained_ok + self.failed + self.not_evaluated

    @property
    def proposals(self) -> int:
        return self.valid + self.invalid + self.duplicate


def _state(view: RunView) -> dict[str, Any] | None:
    ck = view.store.last_checkpoint()
    return (ck or {}).get("state", {}).get("operators")


def _stored_rows(view: RunView) -> dict[str, OperatorRow]:
    """Counts from the candidate rows and their search results."""
    screen = view.fidelities[0] if view.fidelities else None
    rows: dict[str, OperatorRow] = {}
    for c in view.all:
        if c["operator"] in NOT_PROPOSED or c["state"] == "simplify":
            continue
        row = rows.setdefault(c["operator"], OperatorRow(c["operator"]))
        if c["state"] == "invalid":
            row.invalid += 1
            continue
        if c["state"] == "duplicate":
            row.duplicate_stored += 1
            continue
        if c["level"] < 0:
            row.not_evaluated += 1
            continue
        if not ok_score(c["score"]):
            row.failed += 1
            continue
        row.trained_ok += 1
        row.best = max(row.best, c["score"])
        mine = c["results"].get(screen)
        parents = [view.by_id[p].get("results", {}).get(screen) for p in c["parents"] if p in view.by_id]
        base = max((r.score for r in parents if r is not None and r.ok), default=WORST_SCORE)
        if mine is not None and mine.ok and base > WORST_SCORE and mine.score > base:
            row.improved += 1
    return rows


def _children_shares(view: RunView, windows: int = 5) -> dict[str, list[float]]:
    """Per operator, its share of the children made in each of ``windows`` consecutive spans of
    generations (one generation's few children would make a noisy series)."""
    made = sorted((int(c["generation"]), c["operator"]) for c in view.all
                  if c["operator"] not in NOT_PROPOSED and c["state"] != "simplify")
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


def operator_rows(view: RunView) -> tuple[list[OperatorRow], dict[str, Any] | None]:
    """(rows sorted by operator, bandit state or None). In ``fixed`` mode the shares shown are the
    children each operator actually made: a strategy that names its own operators (the prompt
    algorithms) does not draw from the recorded mix, so the mix would misstate what ran."""
    rows = _stored_rows(view)
    state = _state(view)
    table = operator_table(state)
    realized = _children_shares(view) if state and state.get("algorithm") == "fixed" else None
    for b in table:
        row = rows.setdefault(b["operator"], OperatorRow(b["operator"]))
        seen = row.proposals - row.not_evaluated       # what the bandit observed of the stored ones
        row.duplicate_unstored = max(0, int(b["children"]) - seen)
        row.mean_reward = b["mean_reward"]
        row.series = list(b["series"]) if realized is None else realized.get(row.operator, [])
        row.share = row.series[-1] if row.series else 0.0
    return [rows[k] for k in sorted(rows) if rows[k].proposals or rows[k].series], (state if table else None)


def _unit(state: dict[str, Any] | None) -> str:
    return "/unit" if state and state.get("cost") == "units" else "/s"


def _reward(r: OperatorRow, unit: str = "") -> str:
    return "n/a" if r.mean_reward is None else f"{r.mean_reward:.3g}{unit}"


def operator_lines(view: RunView) -> list[str]:
    """The operator table as text lines (``optforge show``)."""
    rows, state = operator_rows(view)
    if not rows:
        return []
    alg = state["algorithm"] if state else "fixed (no bandit state: a run from before the operator bandit)"
    out = [f"operators ({alg}; reward = improvement over the best parent at screening, per "
           f"{'evaluation unit' if _unit(state) == '/unit' else 'second'}; share: first -> last generation;",
           "  proposals = valid + invalid + duplicate, valid = trained ok + failed + not evaluated):",
           f"  {'operator':<17}{'proposals':>10}{'valid':>7}{'improved':>9}{'invalid':>8}{'dup':>5}{'failed':>7}"
           f"{'mean reward':>14}  share"]
    for r in rows:
        pts = share_points(r.series)
        share = " -> ".join(f"{100 * s:.0f}%" for s in pts) if pts else "n/a"
        out.append(f"  {r.operator:<17}{r.proposals:>10}{r.valid:>7}{r.improved:>9}{r.invalid:>8}{r.duplicate:>5}"
                   f"{r.failed:>7}{_reward(r, _unit(state)):>14}  {share}")
    return out


def shares_figure(state: dict[str, Any] | None) -> go.Figure | None:
    """The bandit's share of children per operator and generation (stacked), or None without history."""
    hist = (state or {}).get("history") or []
    if len(hist) < 2:
        return None
    names = sorted({k for _g, sh in hist for k in sh})
    gens = [g for g, _sh in hist]
    fig = go.Figure([go.Scatter(x=gens, y=[100 * sh.get(n, 0.0) for _g, sh in hist], name=n, mode="lines",
                                stackgroup="share", line_shape="hv",
                                hovertemplate=f"{html.escape(n)}: %{{y:.1f}}% (generation %{{x}})<extra></extra>")
                     for n in names])
    fig.update_layout(title="share of children per operator (the bandit's plan)", xaxis_title="generation",
                      yaxis_title="share of children (%)", yaxis_range=[0, 100], height=340,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


#: The HTML table's columns: (header, what it counts, the row's value).
COLUMNS: list[tuple[str, str, Any]] = [
    ("proposals", "attempts the operator made, retries included (= valid + invalid + duplicate)",
     lambda r: r.proposals),
    ("invalid", "refused before training (parse/check errors, no applicable change, no code in an LLM reply)",
     lambda r: r.invalid),
    ("duplicate", "computes what an earlier candidate computes (not trained again)", lambda r: r.duplicate),
    ("valid", "new, valid children (= trained ok + failed + not evaluated)", lambda r: r.valid),
    ("trained ok", "trained and scored", lambda r: r.trained_ok),
    ("failed", "diverged, timed out or raised in training", lambda r: r.failed),
    ("not evaluated", "made when the budget ran out", lambda r: r.not_evaluated),
    ("improved", "trained ok and beat their best parent at the screening fidelity", lambda r: r.improved),
]


def operator_sections(view: RunView) -> list[str]:
    """The report's one operator section: the table (with totals) and the shares over generations."""
    rows, state = operator_rows(view)
    if not rows:
        return []
    unit = _unit(state)[1:]
    head = "".join(f"<th title='{html.escape(d, quote=True)}'>{h}</th>" for h, d, _ in COLUMNS)
    head = f"<tr><th>operator</th>{head}<th>best score</th><th>mean reward ({unit})</th><th>share (last)</th></tr>"
    body = []
    for r in rows:
        cells = "".join(f"<td data-col='{h}'>{get(r)}</td>" for h, _, get in COLUMNS)
        share = "n/a" if r.share is None else f"{100 * r.share:.1f}%"
        best = f"{r.best:+.4f}" if ok_score(r.best) else "-"
        body.append(f"<tr data-operator='{html.escape(r.operator, quote=True)}'><td>{html.escape(r.operator)}</td>"
                    f"{cells}<td>{best}</td><td>{_reward(r)}</td><td>{share}</td></tr>")
    totals = "".join(f"<td data-col='{h}'><b>{sum(get(r) for r in rows)}</b></td>" for h, _, get in COLUMNS)
    body.append(f"<tr class='total'><td><b>total</b></td>{totals}<td></td><td></td><td></td></tr>")
    alg = html.escape(state["algorithm"]) if state else "fixed (run from before the operator bandit)"
    unstored = sum(r.duplicate_unstored for r in rows)
    defs = "".join(f"<li><b>{h}</b>: {html.escape(d)}</li>" for h, d, _ in COLUMNS)
    note = (f" {unstored} of the duplicates are random operators' proposals the store does not keep; the "
            "operator bandit counted them." if unstored else "")
    fig = shares_figure(state)
    return [f"<h2>Operator choice ({alg})</h2><p>Every proposal of the search, by the operator that made it "
            f"(the seeds and the winners' simplification are not proposals).{note} Reward: a child's "
            "improvement over its best parent at the screening fidelity (0 for an invalid or duplicate "
            f"proposal), per unit of cost.</p><ul class='defs'>{defs}</ul>"
            f"<table id='operators'>{head}{''.join(body)}</table>" + (to_div(fig, "shares") if fig else "")]
