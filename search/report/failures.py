"""The report's failures section: why candidates failed, counted by reason, with the latest examples.

A candidate fails at one of two stages: as a proposal (invalid: refused by the kind's checker or
the LLM reply had no usable code; duplicate: an LLM proposal computing what an earlier candidate
computes) or in training (diverged, timed out, raised: the reason is the evaluation's, or its
first failed task's). Reasons are grouped with their numbers masked ("#12", "0.003" -> "N"),
so one cause with many ids reads as one row.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass

from search.core import RunView

from .figures import failure_text, ok_score

_NUMBER = re.compile(r"#?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass
class Failure:
    id: int
    operator: str
    generation: int
    stage: str        # "proposal" or "training at <fidelity>"
    reason: str
    raw: str | None = None


def failures(view: RunView) -> list[Failure]:
    """Every failed candidate of the search, in id order (a training failure at its highest fidelity)."""
    out = []
    for c in view.all:
        if c["state"] == "simplify" or c["operator"] == "simplify":
            continue
        if c["state"] in ("invalid", "duplicate"):
            out.append(Failure(c["id"], c["operator"], c["generation"], f"proposal ({c['state']})",
                               c["reason"] or "no reason recorded", c.get("raw_reply")))
        elif c["state"] == "ok" and c["level"] >= 0 and not ok_score(c["score"]):
            fid = view.fidelities[c["level"]]
            out.append(Failure(c["id"], c["operator"], c["generation"], f"training at {fid}",
                               failure_text(c["results"][fid])))
    return out


def reason_group(reason: str) -> str:
    """A reason with its numbers masked, so failures of one cause group together."""
    return _NUMBER.sub("N", reason)[:240]


def failure_sections(view: RunView, examples: int = 12, listed: int = 200) -> list[str]:
    """HTML: the reasons with their counts, the latest ``examples`` failures in full, and up to
    ``listed`` more in a collapsed list."""
    fs = failures(view)
    if not fs:
        return ["<h2>Failures</h2><p>No candidate failed.</p>"]
    groups = Counter((f.stage.split(" (")[0].split(" at ")[0], reason_group(f.reason)) for f in fs)
    first: dict[tuple[str, str], int] = {}
    for f in fs:
        first.setdefault((f.stage.split(" (")[0].split(" at ")[0], reason_group(f.reason)), f.id)
    summary = "".join(f"<tr><td>{n}</td><td>{html.escape(stage)}</td><td class='reason'>{html.escape(g)}</td>"
                      f"<td>#{first[(stage, g)]}</td></tr>" for (stage, g), n in groups.most_common())

    def row(f: Failure) -> str:
        raw = (f"<details><summary>reply</summary><pre>{html.escape(f.raw)}</pre></details>" if f.raw else "")
        return (f"<tr data-id='{f.id}'><td>#{f.id}</td><td>{html.escape(f.operator)}</td><td>{f.generation}</td>"
                f"<td>{html.escape(f.stage)}</td><td class='reason'>{html.escape(f.reason)}{raw}</td></tr>")

    head = "<tr><th>id</th><th>operator</th><th>generation</th><th>stage</th><th>reason</th></tr>"
    latest = fs[::-1]
    shown = "".join(row(f) for f in latest[:examples])
    rest = latest[examples:examples + listed]
    more = (f"<details><summary>{len(rest)} earlier failure(s)"
            + (f" (of {len(latest) - examples})" if len(latest) - examples > listed else "")
            + f"</summary><table>{head}{''.join(row(f) for f in rest)}</table></details>") if rest else ""
    n_prop = sum(f.stage.startswith("proposal") for f in fs)
    return [f"<h2>Failures</h2><p>{len(fs)} candidate(s) failed: {n_prop} as proposals, {len(fs) - n_prop} in "
            "training. By reason (numbers masked as N):</p><table id='failure-reasons'><tr><th>count</th>"
            f"<th>stage</th><th>reason</th><th>first</th></tr>{summary}</table><h3>Latest failures</h3>"
            f"<table id='failures'>{head}{shown}</table>{more}"]
