"""Optimizer step time: DSL-compiled rules vs torch.optim, side by side in one run.

A benchmark, not a test. Builds a model of >= 10M parameters in many tensors (a stack of
Linear layers with biases), fills every gradient with fixed random numbers, and times
``optimizer.step()`` for:

* the DSL AdamW (``dsl.to_optimizer``) vs ``torch.optim.AdamW`` with ``foreach=True``,
  ``fused=True`` and ``foreach=False`` (the plain per-parameter loop);
* the DSL Lion vs a plain hand-written foreach Lion (below);
* the DSL rules' whole-bucket plan ("untiled": the CPU path before cache tiling);
* with ``--tiles N,M``: the DSL AdamW with other CPU tile sizes; with ``--alloc``: the DSL
  rules with temporaries freshly allocated every step (no scratch buffers, no tiles);
* with ``--compile``: the DSL rules through ``torch.compile`` too (slow to build);
* with ``--export``: the standalone module ``dsl.export_python`` writes for AdamW;
* with ``--zoo``: every library rule torch also ships (AdamW, Adam, SGD, NAdam, RAdam, Adamax,
  Adafactor, Muon) against torch's class (foreach where torch has one), then the library's
  matrix rules (Adafactor, Adam-mini, AdamP, SPAM, Scion, SWAN, Shampoo, SOAP, Conda, GaLore,
  APOLLO-Mini, Muon)
  against the DSL AdamW on the same model.

Measurements are interleaved: each round runs every optimizer for ``--steps`` steps, in a
rotating order, and the table reports the median over rounds of the ms per step (so drift
and noise from other processes hit every contender alike). Ratios are against foreach
AdamW and fused AdamW.

    python bench/step_time.py                   # CPU, float32, 15M parameters
    python bench/step_time.py --dtype bfloat16 --export --compile
    python bench/step_time.py --device cuda     # on a GPU machine
    python bench/step_time.py --zoo --width 512 --depth 8 --steps 2 --rounds 5
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsl import export_python, get_rule, to_optimizer

# the library's rules (dsl.library), the same text the tests check against torch.optim
ADAMW = get_rule("adamw")
LION = get_rule("lion")


class ForeachLion(torch.optim.Optimizer):
    """Lion written by hand with torch._foreach_* (the baseline for the DSL Lion)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            ms = []
            for p in params:
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p)
                ms.append(st["exp_avg"])
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            torch._foreach_mul_(params, 1 - lr * wd)
            u = torch._foreach_lerp(ms, grads, 1 - beta1)  # beta1 * m + (1 - beta1) * g
            torch._foreach_sign_(u)
            torch._foreach_add_(params, u, alpha=-lr)
            torch._foreach_lerp_(ms, grads, 1 - beta2)
        return None


def make_model(width: int, depth: int, device: str, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(depth):
        w = torch.randn(width, width, generator=gen) * width ** -0.5
        b = torch.randn(width, generator=gen) * 0.01
        params += [w, b]
    out = []
    for p in params:
        q = p.to(device=device, dtype=dtype).requires_grad_()
        q.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device=device, dtype=dtype)
        out.append(q)
    return out


def with_tile(cls, tile: int):
    """The DSL optimizer class with another CPU tile size (0: whole-bucket foreach calls)."""
    return type(cls.__name__, (cls,), {"_tile": tile})


def contenders(args):
    DslAdamW = to_optimizer(ADAMW)
    DslLion = to_optimizer(LION)
    kw = dict(lr=1e-4, weight_decay=0.01)
    c = {
        "torch AdamW foreach": lambda ps: torch.optim.AdamW(ps, foreach=True, **kw),
        "torch AdamW fused": lambda ps: torch.optim.AdamW(ps, fused=True, **kw),
        "torch AdamW for-loop": lambda ps: torch.optim.AdamW(ps, foreach=False, **kw),
        "DSL AdamW": lambda ps: DslAdamW(ps, **kw),
        "hand foreach Lion": lambda ps: ForeachLion(ps, **kw),
        "DSL Lion": lambda ps: DslLion(ps, **kw),
    }
    if not args.no_untiled:  # the whole-bucket foreach plan (the default path before tiling)
        c["DSL AdamW untiled"] = lambda ps: with_tile(DslAdamW, 0)(ps, **kw)
        c["DSL Lion untiled"] = lambda ps: with_tile(DslLion, 0)(ps, **kw)
    if args.alloc:  # temporaries in fresh tensors every step (no scratch buffers, no tiles)
        c["DSL AdamW alloc"] = lambda ps: type("A", (DslAdamW,), {"N_SCRATCH": 0, "ELEMENTWISE": False})(ps, **kw)
        c["DSL Lion alloc"] = lambda ps: type("L", (DslLion,), {"N_SCRATCH": 0, "ELEMENTWISE": False})(ps, **kw)
    for t in [int(x) for x in args.tiles.split(",") if x.strip()]:
        c[f"DSL AdamW tile={t}"] = lambda ps, t=t: with_tile(DslAdamW, t)(ps, **kw)
    if args.export:
        path = Path(tempfile.mkdtemp()) / "exported_adamw.py"
        path.write_text(export_python(ADAMW, "ExportedAdamW"))
        spec = importlib.util.spec_from_file_location("exported_adamw", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        c["exported AdamW"] = lambda ps: mod.ExportedAdamW(ps, **kw)
    if args.compile:
        CA, CL = to_optimizer(ADAMW, compile=True), to_optimizer(LION, compile=True)
        c["DSL AdamW compiled"] = lambda ps: CA(ps, **kw)
        c["DSL Lion compiled"] = lambda ps: CL(ps, **kw)
    return c


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_contenders(cons, args, dtype, model=None):
    """Median ms per step (wall and process CPU) of each contender, interleaved over rounds.

    ``model`` (default ``make_model``) builds a fresh parameter list for each contender."""
    model = model or (lambda: make_model(args.width, args.depth, args.device, dtype))
    opts = {}
    for name, make in cons.items():
        ps = model()
        try:
            opt = make(ps)
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                opt.step()
            sync(args.device)
            if args.compile and "compiled" in name:
                print(f"# {name}: warm-up (incl. compilation) {time.perf_counter() - t0:.1f} s")
            opts[name] = opt
        except Exception as e:  # e.g. fused AdamW for a dtype/device torch does not support
            print(f"# {name}: skipped ({type(e).__name__}: {e})")
    times: dict[str, list[float]] = {k: [] for k in opts}
    cpu: dict[str, list[float]] = {k: [] for k in opts}
    names = list(opts)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            opt = opts[name]
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                opt.step()
            sync(args.device)
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
            cpu[name].append((time.process_time() - c0) / args.steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    return med, cmed, times, names


#: DSL library rule -> torch.optim's class of the same algorithm (foreach where torch has it);
#: torch's Muon is the library's muon_scaled (with the shape factor) and takes only matrices
TORCH_TWINS = {
    "adamw": lambda ps, kw: torch.optim.AdamW(ps, foreach=True, **kw),
    "adam": lambda ps, kw: torch.optim.Adam(ps, foreach=True, **kw),
    "sgd": lambda ps, kw: torch.optim.SGD(ps, foreach=True, **kw),
    "nadam": lambda ps, kw: torch.optim.NAdam(ps, foreach=True, **kw),
    "radam": lambda ps, kw: torch.optim.RAdam(ps, foreach=True, **kw),
    "adamax": lambda ps, kw: torch.optim.Adamax(ps, foreach=True, **kw),
    "adafactor": lambda ps, kw: torch.optim.Adafactor(ps, foreach=True, **kw),
    "muon_scaled": lambda ps, kw: torch.optim.Muon(ps, **kw),
}
#: the library rules that are not elementwise (shaped state, matrix algebra), timed against DSL AdamW
MATRIX_RULES = ("adafactor", "adam_mini", "adamp", "spam", "scion", "swan", "shampoo", "soap", "conda",
                "galore", "apollo_mini", "muon_scaled")


def zoo_main(args, dtype) -> None:
    """Each library rule torch also ships against torch's class, then the matrix rules vs DSL AdamW."""
    kw = dict(lr=1e-3, weight_decay=0.01)
    matrices = lambda: [p for p in make_model(args.width, args.depth, args.device, dtype) if p.dim() == 2]  # noqa: E731
    print("# library rules vs torch.optim (same model; Muon: the matrices only, for both)")
    print(f"{'rule':14s} {'DSL ms':>9s} {'torch ms':>9s} {'wall DSL/torch':>15s} {'cpu DSL/torch':>14s}")
    for name, twin in TORCH_TWINS.items():
        Opt = to_optimizer(get_rule(name))
        cons = {"dsl": lambda ps, Opt=Opt: Opt(ps, **kw), "torch": lambda ps, twin=twin: twin(ps, kw)}
        med, cmed, _, _ = time_contenders(cons, args, dtype, matrices if name == "muon_scaled" else None)
        if len(med) == 2:
            print(f"{name:14s} {med['dsl']:9.2f} {med['torch']:9.2f} {med['dsl'] / med['torch']:14.2f}x "
                  f"{cmed['dsl'] / cmed['torch']:13.2f}x", flush=True)
    print("# matrix rules vs the DSL AdamW (same model, the rules' default hyperparameters)")
    classes = {name: to_optimizer(get_rule(name)) for name in ("adamw",) + MATRIX_RULES}
    cons = {name: (lambda ps, Opt=Opt: Opt(ps, **kw)) for name, Opt in classes.items()}
    med, cmed, _, names = time_contenders(cons, args, dtype)
    print(f"{'rule':14s} {'ms/step':>9s} {'wall /adamw':>12s} {'cpu /adamw':>11s}")
    for k in names:
        print(f"{k:14s} {med[k]:9.2f} {med[k] / med['adamw']:11.1f}x {cmed[k] / cmed['adamw']:10.1f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--depth", type=int, default=26, help="Linear layers (2 tensors each)")
    ap.add_argument("--steps", type=int, default=5, help="steps per contender per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd DSL rules")
    ap.add_argument("--export", action="store_true", help="also time the module dsl.export_python writes")
    ap.add_argument("--tiles", default="", help="comma-separated tile sizes (elements) to time DSL AdamW with")
    ap.add_argument("--alloc", action="store_true", help="also time the DSL rules without scratch buffers")
    ap.add_argument("--no-untiled", action="store_true", help="leave out the untiled DSL contenders")
    ap.add_argument("--only", default="", help="comma-separated substrings of contender names")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--zoo", action="store_true", help="the library rules torch also ships against torch's "
                    "classes, and the matrix rules against DSL AdamW (use a smaller --width/--depth)")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2

    if args.zoo:
        n_params = args.width * args.width * args.depth + args.width * args.depth
        print(f"# zoo step time: {n_params / 1e6:.2f}M parameters in {2 * args.depth} tensors, {args.dtype}, "
              f"device {args.device}; torch {torch.__version__}, {os.cpu_count()} CPUs, "
              f"torch threads {torch.get_num_threads()}")
        zoo_main(args, dtype)
        return 0
    cons = contenders(args)
    if args.only:
        keys = [s.strip() for s in args.only.split(",")]
        cons = {k: v for k, v in cons.items() if any(s in k for s in keys) or "foreach" in k and "AdamW" in k
                or "fused" in k}
    n_params = args.width * args.width * args.depth + args.width * args.depth
    print(f"# optimizer step time: {n_params / 1e6:.1f}M parameters in {2 * args.depth} tensors, "
          f"{args.dtype}, device {args.device}")
    print(f"# torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    med, cmed, times, names = time_contenders(cons, args, dtype)
    base_foreach = med.get("torch AdamW foreach")
    base_fused = med.get("torch AdamW fused")
    print("# wall: median over rounds of wall-clock ms per step; cpu: the same for this process's CPU time "
          "(all threads), less sensitive to other processes on a shared machine")
    print(f"{'optimizer':24s} {'wall ms':>9s} {'min':>8s} {'max':>8s} {'cpu ms':>8s} "
          f"{'wall/foreach':>12s} {'wall/fused':>10s} {'cpu/foreach':>11s} {'cpu/fused':>9s}")
    cf, cu = cmed.get("torch AdamW foreach"), cmed.get("torch AdamW fused")
    for k in names:
        vs_fe = f"{med[k] / base_foreach:.2f}x" if base_foreach else "-"
        vs_fu = f"{med[k] / base_fused:.2f}x" if base_fused else "-"
        c_fe = f"{cmed[k] / cf:.2f}x" if cf else "-"
        c_fu = f"{cmed[k] / cu:.2f}x" if cu else "-"
        print(f"{k:24s} {med[k]:9.2f} {min(times[k]):8.2f} {max(times[k]):8.2f} {cmed[k]:8.2f} "
              f"{vs_fe:>12s} {vs_fu:>10s} {c_fe:>11s} {c_fu:>9s}")
    if "DSL Lion" in med and "hand foreach Lion" in med:
        print(f"DSL Lion / hand foreach Lion: wall {med['DSL Lion'] / med['hand foreach Lion']:.2f}x, "
              f"cpu {cmed['DSL Lion'] / cmed['hand foreach Lion']:.2f}x")
    if "DSL AdamW" in med and base_foreach:
        print(f"DSL AdamW / torch AdamW foreach: wall {med['DSL AdamW'] / base_foreach:.2f}x, "
              f"cpu {cmed['DSL AdamW'] / cf:.2f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
