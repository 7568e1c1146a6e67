"""``optforge eval RULE``: score one update rule against tuned AdamW, with an interval and a verdict.

``RULE`` is a path to a rule's DSL source, a library rule name (``lion``) or a discovered rule name
(``optforge rule list --discovered``); a misspelt name gets a suggestion. Prints, per task, the
tuned learning rate, the rule's metric, the tuned baseline's metric, the relative score (log
ratio, positive = better than AdamW), its seed interval and the task's noise floor (tuned AdamW
against itself on disjoint seeds, measured once and cached; ``--noise-replicates 0`` skips it),
then the overall score with its interval and verdict in one wording (docs/statistics.md) and the
protocol that scored. ``--plot out.png`` draws the held-out metric curves per task.

``--protocol campaign-default`` scores exactly as a campaign does by default (5 lrs x 3 weight
decays, successive halving, per-task clip 0.5); ``eval-default`` (the default) is 9 lrs with each
task's own weight decay and clip 5. ``--json`` prints one JSON object: score, ci, p_improvement,
verdict, tasks (score, ci, noise, metrics), the protocol and the full EvalResult.

``--split test`` computes every metric (the rule's and tuned AdamW's) on the tasks' held-out test
splits instead of validation: use it to report a rule that a search selected on validation scores
(``test_loss`` / ``test_acc`` in the table; the objective tasks have no data and report the same
objective). Val and test results are cached apart.

Exit status: 0 when the rule was scored, 1 for a usage error or a rule the DSL
refuses, 2 when the rule diverged, timed out or failed.
"""
from __future__ import annotations

import argparse
import copy
import json
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
from evaluators import (
    NOISY_ABOVE,
    Candidate,
    EvalCache,
    EvalResult,
    LrGrid,
    NoiseError,
    RuleEvalConfig,
    RuleEvaluator,
    StatsError,
    default_cache_path,
    describe,
    estimate_results,
    noise_floors,
)
from search.core import curves_to_tensorboard, did_you_mean
from search.rules import TUNING_DEFAULTS, baseline_name

from .errors import CLIError


def _known_rules() -> list[str]:
    return list(dsl.list_rules()) + list(dsl.list_discovered())


def _load_rule(spec: str) -> tuple[str, str]:
    """(source text, label) of a path, a library rule or a discovered rule; a file path wins."""
    if os.path.exists(spec):
        try:
            return Path(spec).read_text(encoding="utf-8"), spec
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"cannot read {spec}: {e}") from None
    try:
        prog = dsl.get_rule(spec)
    except KeyError:
        pass
    else:
        what = "discovered rule" if spec in dsl.list_discovered() else "library rule"
        return prog.source(), f"{what} {spec!r}"
    retired = dsl.RETIRED
    if spec in retired:
        r = retired[spec]
        print(f"note: {spec} is a retired discovered rule: {r['reason']}", file=sys.stderr)
        return r["source"], f"retired rule {spec!r}"
    raise CLIError(f"{spec}: no such file, and not a library or discovered rule"
                   f"{did_you_mean(spec, _known_rules() + list(retired))} (`optforge rule list` lists the rules, "
                   "`optforge rule list --discovered` the discovered ones)")


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


#: ``--protocol``: how the rule and the baseline are tuned and clipped. ``eval-default`` is this
#: command's own (9 lrs, each task's fixed weight decay, no halving, clip 5); ``campaign-default``
#: what a campaign scores with unless its ``[evaluator]`` says otherwise (search.rules.TUNING_DEFAULTS).
PROTOCOLS: dict[str, dict] = {"eval-default": {}, "campaign-default": TUNING_DEFAULTS}


def protocol_text(name: str, cfg: RuleEvalConfig) -> str:
    """One line: which protocol scored, and what it is."""
    lrs = cfg.lr_grid.lrs()
    grid = f"{len(lrs)} lrs [{lrs[0]:.3g} .. {lrs[-1]:.3g}]"
    grid += f" x {len(cfg.wd_grid.values)} wds {cfg.wd_grid.values}" if cfg.wd_grid else " x the task's own wd"
    halving = (", halving " + ", ".join(f"keep {k} at {f:.0%}" for f, k in cfg.halving.rungs)) if cfg.halving else ""
    return (f"protocol {name}: {grid}{halving}, per-task clip +-{cfg.clip:g}, seeds {cfg.seeds}, "
            f"{cfg.split} split, baseline tuned {cfg.baseline} on the same grid and seeds")


def _config(args: argparse.Namespace):
    d: dict = {"executor": args.executor, **copy.deepcopy(PROTOCOLS[args.protocol])}
    if args.tasks:
        d["tasks"] = proxies.split_task_list(args.tasks)
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


def _ci(t) -> str:
    return "-" if t is None else f"[{t.ci[0]:+.3f}, {t.ci[1]:+.3f}]"


def print_result(result, label: str, fidelity: str, baseline: str, console=None, split: str = "val",
                 est=None, protocol: str = "") -> None:
    """The per-task table (score, its seed interval and the task's noise floor) and the overall line
    in the ``evaluators.describe`` wording (rich)."""
    console = console or Console()
    if result.status.value == "invalid":
        console.print(f"[red]invalid[/]: {result.reason}")
        return
    where = fidelity if split == "val" else f"{fidelity}, held-out {split} split"
    table = Table(title=f"{label} vs tuned {baseline} ({where})", title_justify="left")
    names = [t.metric_name + (" (higher is better)" if t.higher_is_better else "") for t in result.tasks.values()]
    widths = {"task": max(map(len, result.tasks), default=4), "metric": max(map(len, names), default=6)}
    for col, just in [("task", "left"), ("metric", "left"), ("tuned lr", "right"), ("rule", "right"),
                      (baseline, "right"), ("relative score", "right"), ("CI", "right"), ("noise", "right"),
                      ("status", "left")]:
        table.add_column(col, justify=just, min_width=widths.get(col))
    warnings = []
    for name, tr in result.tasks.items():
        ok = tr.status.value == "ok"
        score = f"{tr.score:+.4f}" if ok else "worst"
        style = "green" if ok and tr.score > 0 else ("red" if not ok else "")
        status = tr.status.value if ok else f"{tr.status.value}: {tr.reason}"
        te = est.tasks.get(name) if est is not None else None
        noise = "-"
        if te is not None and te.noise is not None:
            noise = f"{te.noise:.3f}" + (" noisy" if te.noise > NOISY_ABOVE else "")
        table.add_row(name, tr.metric_name + (" (higher is better)" if tr.higher_is_better else ""),
                      _fmt(tr.best_lr, 3), _fmt(tr.metric), _fmt(tr.baseline),
                      f"[{style}]{score}[/]" if style else score, _ci(te), noise, status)
        warnings += [f"{name}: {w}" for w in tr.extra.get("warnings", [])]
    console.print(table)
    if est is not None and any(t.noise is not None and t.noise > NOISY_ABOVE for t in est.tasks.values()):
        console.print(f"[yellow]noisy[/]: tuned {baseline} scores more than {NOISY_ABOVE} from itself by chance on the "
                      "tasks marked noisy; a win there needs more seeds or a higher fidelity", soft_wrap=True)
    for w in warnings:
        console.print(f"[yellow]warning[/] {w}")
    if result.status.value == "ok":
        console.print(f"overall score [bold]{result.score:+.4f}[/] (mean over {len(result.tasks)} tasks of "
                      f"log({baseline} metric / rule metric); > 0 beats tuned {baseline})"
                      + ("  [dim](cached)[/]" if result.cached else ""))
        if est is not None:
            console.print(describe(est, baseline_name(baseline)), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"[red]{result.status.value}[/]: {result.reason}")
    if protocol:
        console.print(protocol, markup=False, highlight=False, soft_wrap=True)
    console.print(f"[dim]key {result.key}, {result.seconds:.1f}s of training[/]")


def result_json(result: EvalResult, est, label: str, protocol: str, protocol_line: str, baseline: str) -> dict:
    """The one JSON object of ``eval --json``: the estimate (score, ci, p_improvement, verdict, tasks with
    score / ci / noise) merged with each task's metrics, the protocol, and the full EvalResult."""
    e = est.to_json() if est is not None else {
        "score": result.score, "ci": None, "p_improvement": None, "verdict": None, "tasks": {}}
    tasks = {}
    for name, tr in result.tasks.items():
        cell = e["tasks"].get(name, {"score": None, "ci": None, "noise": None})
        tasks[name] = {**cell, "status": tr.status.value, "reason": tr.reason, "metric_name": tr.metric_name,
                       "higher_is_better": tr.higher_is_better, "metric": tr.metric, "baseline_metric": tr.baseline,
                       "lr": tr.best_lr, "wd": tr.extra.get("best_wd"), "baseline_lr": tr.extra.get("baseline_lr"),
                       "baseline_wd": tr.extra.get("baseline_wd"), "seed_metrics": tr.extra.get("seed_metrics"),
                       "baseline_seed_metrics": tr.extra.get("baseline_seed_metrics")}
    return {**e, "tasks": tasks, "rule": label, "status": result.status.value, "reason": result.reason,
            "mean_score": result.score, "baseline": baseline, "fidelity": result.fidelity,
            "protocol": protocol, "protocol_text": protocol_line,
            "describe": describe(est, baseline_name(baseline)) if est is not None else None,
            "key": result.key, "result": result.model_dump(mode="json")}


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


def _estimate(ev: RuleEvaluator, result: EvalResult, fidelity: str, args: argparse.Namespace):
    """The result's Estimate against noise floors measured (or read from the cache) for its tasks."""
    if not result.ok:
        return None
    floors = {}
    if args.noise_replicates > 0:
        cache = EvalCache(args.cache or default_cache_path())
        print(f"noise floors: tuned {ev.config.baseline} vs itself on {args.noise_replicates} x 2 disjoint sets of "
              f"{len(ev.config.seeds)} seeds (cached in {cache.path or 'memory'})", file=sys.stderr)
        try:
            floors = {t: f.floor for t, f in noise_floors(ev, fidelity, list(result.tasks),
                                                          replicates=args.noise_replicates, cache=cache).items()}
        except NoiseError as e:
            print(f"warning: {e}; the verdict uses each task's own interval instead", file=sys.stderr)
        finally:
            cache.close()
    try:
        return estimate_results(result.tasks, floors, clip=ev.config.clip, level=args.level, seed=0)
    except StatsError as e:
        raise CLIError(f"cannot put an interval on this result: {e}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    text, label = _load_rule(args.rule)
    try:  # refuse a bad rule before announcing a run (the evaluator would report it as invalid too)
        dsl.parse(text)
    except dsl.DSLError as e:
        raise CLIError(f"{label}: {e}") from None
    if not 0 < args.level < 1:
        raise CLIError(f"--level {args.level}: give a confidence level between 0 and 1, e.g. 0.95")
    if args.noise_replicates < 0:
        raise CLIError(f"--noise-replicates {args.noise_replicates}: give 0 (no noise floors) or more")
    cfg = _config(args)
    if args.fidelity not in proxies.FIDELITIES:
        raise CLIError(f"--fidelity {args.fidelity!r}: choose one of {', '.join(proxies.FIDELITIES)}")
    line = protocol_text(args.protocol, cfg)
    print(f"scoring {label} on {', '.join(cfg.tasks)} at {args.fidelity} fidelity, executor {cfg.executor}; "
          + line, file=sys.stderr)
    t0 = time.perf_counter()
    with RuleEvaluator(cfg) as ev:
        result = ev.evaluate([Candidate(text=text)], args.fidelity)[0]
        est = _estimate(ev, result, args.fidelity, args)
    if args.json:
        print(json.dumps(result_json(result, est, label, args.protocol, line, cfg.baseline), indent=2))
    else:
        print_result(result, label, args.fidelity, cfg.baseline, split=cfg.split, est=est, protocol=line)
        print(f"done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if result.status.value == "invalid":
        return 1
    if args.plot and result.tasks:
        out = plot_curves(result, args.plot, cfg.baseline)
        print(f"wrote {out}", file=sys.stderr)
    if args.tensorboard and result.tasks:   # search.core.events: rule and tuned baseline overlaid per task
        tb = curves_to_tensorboard(result, args.tensorboard, args.rule, cfg.baseline)
        print(f"wrote TensorBoard curves: tensorboard --logdir {tb}", file=sys.stderr)
    return 0 if result.ok else 2


def register(sub) -> None:
    p = sub.add_parser("eval", help="score one update rule against tuned AdamW on the proxy tasks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rule", metavar="RULE", help="a file with one DSL rule, a library or a discovered rule name")
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
    p.add_argument("--tensorboard", metavar="DIR", help="write the rule's and tuned AdamW's training curves per "
                   "task as TensorBoard event files into DIR")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="eval-default",
                   help="tuning protocol: eval-default (9 lrs, each task's own wd, clip 5) or campaign-default "
                        "(exactly what a campaign scores with by default: 5 lrs x 3 wds, successive halving, "
                        "per-task clip 0.5); --lrs overrides its lr grid")
    p.add_argument("--noise-replicates", type=int, default=4, metavar="K",
                   help="noise floors from K pairs of disjoint seed sets of tuned AdamW vs itself (cached; "
                        "0: none, the verdict then uses each task's own interval; default 4)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--json", action="store_true", help="print one JSON object (score, ci, p_improvement, verdict, "
                   "tasks with score / ci / noise, the protocol and the full EvalResult) instead of a table")
    p.set_defaults(func=cmd_eval)
