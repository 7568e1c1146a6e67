"""What ``optforge show`` and ``optforge report`` add for prompt runs (read from the run only)."""
from __future__ import annotations

import html as _html
from typing import Any

from evaluators.base import Status
from proxies.prompts import decode_prompt
from search.core import parse_campaign
from search.report.figures import png

from .compare import calls_curve
from .final import prompt_final
from .options import campaign_task


def demonstration_pairs(campaign: dict, idx: tuple[int, ...] | list[int]) -> list[dict[str, Any]]:
    """The train examples at ``idx`` of a run's task, rebuilt from its stored campaign."""
    c = parse_campaign(campaign)
    task = campaign_task(c)
    return [{"index": i, "input": task.train[i].input, "output": task.train[i].output}
            for i in idx if 0 <= i < len(task.train)]


def _demo_lines(view: Any, text: str, label: str) -> list[str]:
    idx = decode_prompt(text or "")[1]
    if not idx:
        return []
    try:
        pairs = demonstration_pairs(view.campaign, idx)
    except Exception as e:  # noqa: BLE001 - the indices are in the text already
        return [f"  {label} demonstrations: train examples {list(idx)} ({e})"]
    return [f"  {label} demonstrations (train split, in order): "
            + "; ".join(f"#{d['index']} {d['input']!r} -> {d['output']!r}" for d in pairs)]


def prompt_show_lines(view: Any) -> list[str]:
    """``task: initial test acc -> best test acc`` plus the tested prompts (reads the run only)."""
    fin = prompt_final(view)
    if not fin:
        return ["prompt run: no test results yet (the search has not finished; they are computed at the end)"]
    fmt = (lambda v: "n/a" if v is None else f"{100 * v:.1f}%")
    ini, best = fin.get("initial") or {}, fin.get("best") or {}
    lines = [f"task {fin['task']} (metric {fin['metric']}, algorithm {fin['algorithm']}): test accuracy "
             f"initial {fmt(ini.get('test'))} -> best {fmt(best.get('test'))}"]
    if fin.get("metric") not in ("normalized", "label") and (ini.get("test_normalized") is not None
                                                             or best.get("test_normalized") is not None):
        lines.append(f"  strict normalized exact match on the same predictions: initial "
                     f"{fmt(ini.get('test_normalized'))} -> best {fmt(best.get('test_normalized'))}")
    sel = fin.get("selection") or {}
    how = "kept: no significant dev gain" if sel.get("kept_initial") else f"by dev {fmt(best.get('dev'))}"
    lines += [
             f"  initial prompt: {ini.get('text', '?')}",
             f"  best prompt (#{best.get('id', '?')}, {how}): {best.get('text', '?')}"]
    lines += _demo_lines(view, ini.get("text", ""), "initial prompt's")
    lines += _demo_lines(view, best.get("text", ""), "best prompt's")
    if sel.get("why"):
        lines.append(f"  selection: {sel['why']}")
    lines.append("  tested on the held-out split:")
    for r in fin.get("tested", []):
        tag = " (initial)" if r.get("initial") else ""
        lines.append(f"    #{r['id']:<4} dev {fmt(r.get('dev')):>6}  test {fmt(r.get('test')):>6}  "
                     f"{r.get('operator', '')}{tag}: {r['text']}")
    return lines


def best_dev_curve(view: Any, fidelity: str = "dev") -> list[tuple[int, float]]:
    """(generation, best score at ``fidelity`` so far) for a run."""
    gens: dict[int, float] = {}
    for c in view.individuals:
        r = c["results"].get(fidelity)
        if r is not None and r.status == Status.ok:
            gens[c["generation"]] = max(gens.get(c["generation"], float("-inf")), r.score)
    out, best = [], float("-inf")
    for g in sorted(gens):
        best = max(best, gens[g])
        out.append((g, best))
    return out


def prompt_report_sections(view: Any) -> list[str]:
    out = ["<h2>Prompt optimization</h2><pre>" + _html.escape("\n".join(prompt_show_lines(view))) + "</pre>"]
    curve = best_dev_curve(view)
    if curve:
        import matplotlib.pyplot as plt  # lazy: ~0.4 s of import (see search.report.figures)
        alg = (view.campaign.get("prompt") or {}).get("algorithm", "ga")
        by_calls = [(k, v) for k, v in calls_curve(view) if v is not None]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        axes[0].step([g for g, _ in curve], [100 * v for _, v in curve], where="post", label=alg)
        axes[0].set_xlabel("generation")
        axes[1].step([k for k, _ in by_calls], [100 * v for _, v in by_calls], where="post", label=alg)
        axes[1].set_xlabel("proposer calls")
        for ax in axes:
            ax.set_ylabel("best dev accuracy (%)")
            ax.legend()
        out.append("<h3>Best dev accuracy over iterations</h3>" + png(fig)
                   + "<p>Compare optimizers: <code>optforge report RUN_GA RUN_DE RUN_OPRO</code>.</p>")
    return out
