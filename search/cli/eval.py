"""``optforge eval RULE_FILE``: score one update rule against tuned AdamW on the proxy tasks.

``RULE_FILE`` is a path to a rule's DSL source or the name of a library rule
(``lion``). Prints, per task, the tuned learning rate, the rule's metric, the
tuned baseline's metric and the relative score (log ratio, positive = better
than AdamW), then the overall score. ``--plot out.png`` draws the held-out
metric curves of the rule and of tuned AdamW per task.

``--split test`` computes every metric (the rule's and tuned AdamW's) on the
tasks' held-out test splits instead of validation: use it to report a rule that
a search selected on validation scores (``test_loss`` / ``test_acc`` in the table;
the objective tasks have no data and report the same objective). Val and test
results are cached apart.

Exit status: 0 when the rule was scored, 1 for a usage error or a rule the DSL
refuses, 2 when the rule diverged, timed out or failed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

import dsl
import proxies
from evaluators import Candidate, LrGrid, RuleEvalConfig, RuleEvaluator

from .errors import CLIError


def _load_rule(spec: str) -> tuple[str, str]:
    """(source text, label) of a path or a library rule name; a file path wins."""
    if os.path.exists(spec):
        try:
            return Path(spec).read_text(encoding="utf-8"), spec
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"cannot read {spec}: {e}") from None
    try:
        names = dsl.list_rules()
    except AttributeError:  # pragma: no cover - library not present
        names = []
    if spec in names:
        return dsl.get_rule(spec).source(), f"library rule {spec!r}"
    raise CLIError(f"{spec}: no such file, and not a library rule"
                + (f" (library rules: {', '.join(names)})" if names else ""))


def parse_lrs(spec: str) -> dict:
    """``LO:HI:N`` (N log-spaced values from LO to HI) or a comma list -> an ``lr_grid`` dict."""
    try:
        if ":" in spec:
            lo, hi, n = spec.split(":")
            return LrGrid.from_range(float(lo), float(hi), int(n)).model_dump()
        return LrGrid(values=[float(x) for x in spec.split(",") if x.strip()]).model_dump()
    except (ValueError, TypeError) as e:
        raise CLIError(f"--lrs {spec!r}: {e}. Give LO:HI:N (e.g. 1e-4:1e-1:8) or a comma list "
                    "(e.g. 1e-3,3e-3,1e-2)") from None


def _int_list(spec: str, what: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"{what} {spec!r}: expected comma-separated integers, e.g. 0,1") from None


def _config(args: argparse.Namespace):
    d: dict = {"executor": args.executor}
    if args.tasks:
        d["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.lrs:
        d["lr_grid"] = parse_lrs(args.lrs)
    if args.seeds:
        d["seeds"] = _int_list(args.seeds, "--seeds")
    if args.timeout is not None:
        d["timeout_s"] = args.timeout
    if args.workers is not None:
        d["workers"] = args.workers
    if args.ray_address:
        d["ray_address"] = args.ray_address
    if args.cache:
        d["cache_dir"] = args.cache
    if args.baseline:
        d["baseline"] = args.baseline
    d["split"] = args.split
    try:
        return RuleEvalConfig(**d)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}"
                         for err in e.errors())
        raise CLIError(msgs) from None


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def print_result(result, label: str, fidelity: str, baseline: str, console=None, split: str = "val") -> None:
    """The per-task table and the overall line (rich)."""
    console = console or Console()
    if result.status.value == "invalid":
        console.print(f"[red]invalid[/]: {result.reason}")
        return
    where = fidelity if split == "val" else f"{fidelity}, held-out {split} split"
    table = Table(title=f"{label} vs tuned {baseline} ({where})", title_justify="left")
    for col, just in [("task", "left"), ("metric", "left"), ("tuned lr", "right"), ("rule", "right"),
                      (baseline, "right"), ("relative score", "right"), ("status", "left")]:
        table.add_column(col, justify=just)
    warnings = []
    for name, tr in result.tasks.items():
        ok = tr.status.value == "ok"
        score = f"{tr.score:+.4f}" if ok else "worst"
        style = "green" if ok and tr.score > 0 else ("red" if not ok else "")
        status = tr.status.value if ok else f"{tr.status.value}: {tr.reason}"
        table.add_row(name, tr.metric_name + (" (higher is better)" if tr.higher_is_better else ""),
                      _fmt(tr.best_lr, 3), _fmt(tr.metric), _fmt(tr.baseline),
                      f"[{style}]{score}[/]" if style else score, status)
        warnings += [f"{name}: {w}" for w in tr.extra.get("warnings", [])]
    console.print(table)
    for w in warnings:
        console.print(f"[yellow]warning[/] {w}")
    if result.status.value == "ok":
        console.print(f"overall score [bold]{result.score:+.4f}[/] (mean over {len(result.tasks)} tasks of "
                      f"log({baseline} metric / rule metric); > 0 beats tuned {baseline})"
                      + ("  [dim](cached)[/]" if result.cached else ""))
    else:
        console.print(f"[red]{result.status.value}[/]: {result.reason}")
    console.print(f"[dim]key {result.key}, {result.seconds:.1f}s of training[/]")


def plot_curves(result, path: str, baseline: str) -> Path:
    """Held-out metric over training: the rule vs tuned baseline, one panel per task (PNG)."""
    import matplotlib  # lazy: ~0.4 s of import, only where a figure is drawn (see search.report.figures)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = [tr for tr in result.tasks.values() if tr.curve]
    if not tasks:
        raise CLIError("nothing to plot: the rule produced no curve on any task")
    n = len(tasks)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, tr in zip(axes.flat, tasks):
        steps = tr.extra.get("curve_steps") or list(range(len(tr.curve)))
        ax.plot(steps[:len(tr.curve)], tr.curve, label=f"rule (lr {_fmt(tr.best_lr, 3)})", color="C0")
        bc = tr.extra.get("baseline_curve") or []
        if bc:
            bsteps = tr.extra.get("baseline_curve_steps") or list(range(len(bc)))
            blabel = f"tuned {baseline} (lr {_fmt(tr.extra.get('baseline_lr'), 3)})"
            ax.plot(bsteps[:len(bc)], bc, label=blabel, color="C1", linestyle="--")
        values = [v for v in list(tr.curve) + list(bc) if v is not None and math.isfinite(v)]
        if values and min(values) > 0 and not tr.higher_is_better:
            ax.set_yscale("log")
        ax.set_title(f"{tr.task}: score {tr.score:+.3f}")
        ax.set_xlabel("step")
        ax.set_ylabel(tr.metric_name)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{result.fidelity} fidelity, overall score {result.score:+.3f}"
                 if result.status.value == "ok" else f"{result.fidelity} fidelity, {result.status.value}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    text, label = _load_rule(args.rule)
    try:  # refuse a bad rule before announcing a run (the evaluator would report it as invalid too)
        dsl.parse(text)
    except dsl.DSLError as e:
        raise CLIError(f"{label}: {e}") from None
    cfg = _config(args)
    if args.fidelity not in proxies.FIDELITIES:
        raise CLIError(f"--fidelity {args.fidelity!r}: choose one of {', '.join(proxies.FIDELITIES)}")
    lrs = cfg.lr_grid.lrs()
    print(f"scoring {label} on {', '.join(cfg.tasks)} at {args.fidelity} fidelity: {len(lrs)} lrs "
          f"[{lrs[0]:.3g} .. {lrs[-1]:.3g}] x {len(cfg.seeds)} seeds, {cfg.split} split, "
          f"executor {cfg.executor}",
          file=sys.stderr)
    t0 = time.perf_counter()
    with RuleEvaluator(cfg) as ev:
        result = ev.evaluate([Candidate(text=text)], args.fidelity)[0]
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print_result(result, label, args.fidelity, cfg.baseline, split=cfg.split)
        print(f"done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if result.status.value == "invalid":
        return 1
    if args.plot and result.tasks:
        out = plot_curves(result, args.plot, cfg.baseline)
        print(f"wrote {out}", file=sys.stderr)
    return 0 if result.ok else 2


def register(sub) -> None:
    p = sub.add_parser("eval", help="score one update rule against tuned AdamW on the proxy tasks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rule", metavar="RULE_FILE", help="a file with one DSL rule, or a library rule name")
    p.add_argument("--tasks", help="comma-separated proxy tasks (default: the default suite)")
    p.add_argument("--fidelity", default="small", help="tiny, small or full (default: small)")
    p.add_argument("--lrs", help="learning-rate grid: LO:HI:N log-spaced, or a comma list "
                                 "(default: 9 values from 1e-4 to 1)")
    p.add_argument("--seeds", help="comma-separated seeds (default: 0,1)")
    p.add_argument("--split", choices=["val", "test"], default="val",
                   help="held-out split of the metrics: val (default; what searches select on) or test "
                        "(report a selected rule on data no search has seen)")
    p.add_argument("--executor", choices=["inprocess", "pool", "ray"], default="pool",
                   help="where the sweeps run (default: a local process pool)")
    p.add_argument("--workers", type=int, help="pool size / Ray CPUs")
    p.add_argument("--ray-address", help="Ray cluster address (with --executor ray; default: local Ray)")
    p.add_argument("--timeout", type=float, help="time limit per work unit in seconds (default: 600)")
    p.add_argument("--baseline", help="reference rule: a library name or DSL source (default: adamw)")
    p.add_argument("--cache", metavar="DIR", help="persistent result cache (directory or .sqlite file)")
    p.add_argument("--plot", metavar="OUT.png", help="draw the rule's and tuned AdamW's curves per task")
    p.add_argument("--json", action="store_true", help="print the EvalResult as JSON instead of a table")
    p.set_defaults(func=cmd_eval)
