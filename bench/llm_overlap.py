"""LLM calls overlapped with training: wall time per campaign, today's sequential loop against
``[search] pipeline = true`` (search.core.pipeline), same campaign, same budget.

Two LLM set-ups:

- ``embedded``: the embedded model (SmolLM2-135M) in the campaign's own process; it shares the
  machine's cores with the training workers, so the overlap can only use idle cores;
- ``remote``: a slow remote endpoint: ``optforge llm serve --backend scripted --latency-s L`` on
  localhost, reached with the ``openai`` backend. The scripted backend costs no CPU, so this
  stands for a model on another machine (a GPU server) that answers after L seconds.

Campaign: SGD-momentum seed, digits_logreg + digits_mlp, funnel tiny -> small, the process pool,
``--budget`` units, batch 4, a fixed 25% of children from the LLM (``algorithm = "fixed"``, so
both loops draw the same operator mix). A benchmark, not a test; numbers depend on the machine:

    flock /tmp/of-bench.lock python bench/llm_overlap.py --budget 48          # all four runs
    python bench/llm_overlap.py --table                                       # markdown table
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.core import Engine, parse_campaign  # noqa: E402


def rule_replies(n: int = 64) -> list[str]:
    """Valid DSL programs (Adam/RMSprop-like, distinct constants) for the scripted endpoint."""
    out = []
    for k in range(n):
        b2 = 0.99 + 0.0001 * k
        if k % 2:
            out.append(f"```python\ndef r(w, g, v, lr, alpha={b2:.4f}, eps=1e-08):\n    v = interp(g * g, v, alpha)\n"
                       f"    w = w - lr * g / (sqrt(v) + eps)\n    return w, v\n```")
        else:
            out.append(f"```python\ndef r(w, g, m, v, lr, b1=0.9, b2={b2:.4f}, eps=1e-08):\n    m = interp(g, m, b1)\n"
                       f"    v = interp(g * g, v, b2)\n    w = w - lr * m / (sqrt(v) + eps)\n    return w, m, v\n```")
    return out


def campaign_dict(name: str, budget: int, pipeline: bool, llm: dict) -> dict:
    return {"name": name, "seed_rules": ["sgd_momentum"], "tasks": ["digits_logreg", "digits_mlp"],
            "fidelities": ["tiny", "small"], "eval_seeds": [0], "executor": "pool", "random_seed": 0,
            "budget": {"evaluations": budget},
            "search": {"population": 16, "tournament": 4, "batch_size": 4, "pipeline": pipeline},
            "operators": {"llm_share": 0.25}, "llm": llm, "simplify": {"enabled": False}}


def start_server(latency: float, replies: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "llm", "serve", "--backend", "scripted",
                             "--replies", str(replies), "--port", "0", "--latency-s", str(latency)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://[\d.]+:\d+\S*)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"llm serve did not start: {line}")
    return proc, m.group(1).rstrip("/")


def run_one(name: str, d: dict, out: Path) -> dict:
    c = parse_campaign(d, f"<bench {name}>")
    t0 = time.perf_counter()
    eng = Engine(c, out / name, fresh=True)
    try:
        s = eng.run()
        wall = time.perf_counter() - t0
        llm_s = sum(x["latency_s"] for x in eng.store.llm_calls())
        return {"name": name, "wall_s": round(wall, 1), "engine_wall_s": round(s.wall_seconds, 1),
                "used": s.used, "generations": s.generations, "llm_calls": s.llm_calls,
                "llm_latency_sum_s": round(llm_s, 1), "prefetched": eng.prefetch_hits,
                "best": s.best_score, "pipeline": d["search"]["pipeline"]}
    finally:
        eng.close()


def table(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("overlap_*.json"))]
    if not rows:
        return "(no results yet)"
    lines = ["| LLM | loop | wall s | generations | LLM calls | sum of LLM latencies s | answered by prefetch "
             "| best (small) | load before -> after |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['llm']} | {'pipelined' if r['pipeline'] else 'sequential'} | {r['wall_s']:.0f} | "
                     f"{r['generations']} | {r['llm_calls']} | {r['llm_latency_sum_s']:.0f} | {r['prefetched']} | "
                     f"{r['best']:+.3f} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
    by = {(r["llm"], r["pipeline"]): r for r in rows}
    for llm in sorted({r["llm"] for r in rows}):
        if (llm, False) in by and (llm, True) in by:
            ratio = by[(llm, True)]["wall_s"] / by[(llm, False)]["wall_s"]
            lines.append(f"\n{llm}: pipelined / sequential wall time = {ratio:.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--latency", type=float, default=4.0, help="seconds per request of the remote endpoint")
    ap.add_argument("--only", choices=["embedded", "remote"], default=None)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_overlap"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(out))
        return 0
    setups = ["embedded", "remote"] if args.only is None else [args.only]
    for setup in setups:
        proc = None
        try:
            if setup == "remote":
                replies = out / "replies.json"
                replies.write_text(json.dumps(rule_replies()))
                proc, url = start_server(args.latency, replies)
                llm = {"backend": "openai", "base_url": url, "model": "optforge", "structured": "off",
                       "cache": "off"}
            else:
                llm = {"cache": "off"}
                subprocess.run([sys.executable, "-m", "search.cli", "llm", "ping"], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL)   # the model is loaded (converted) once before timing
            for pipeline in (False, True):
                name = f"overlap_{setup}_{'pipe' if pipeline else 'seq'}"
                load0 = os.getloadavg()[0]
                print(f"=== {name} ===", flush=True)
                r = run_one(name, campaign_dict(name, args.budget, pipeline, llm), out)
                r.update(llm=setup if setup == "embedded" else f"remote ({args.latency:g} s/request)",
                         load=[load0, os.getloadavg()[0]], budget=args.budget,
                         finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         machine=f"{os.cpu_count()}-core CPU container")
                print(json.dumps(r), flush=True)
                (out / f"{name}.json").write_text(json.dumps(r, indent=2))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
