"""``to_optimizer(rule) -> type[torch.optim.Optimizer]``: a DSL rule as a real, fast optimizer.

The class is built once per rule: the program is compiled to a multi-tensor plan
(``dsl.foreach``) at class creation, and every ``step()`` runs that plan over the
parameters of each group, bucketed by (device, dtype, step count), with
``torch._foreach_*`` calls, like ``torch.optim.AdamW(foreach=True)`` does. On CPU the
step's temporaries live in scratch tensors kept from step to step (``plan.n_scratch``
per parameter; AdamW: one): freshly allocated multi-megabyte tensors page-fault on
every step, which measured here cost more than the arithmetic (float32 and float64; with
bfloat16/float16 parameters a fresh allocation measured faster than the extra copy a
scratch buffer needs, so 2-byte dtypes allocate). Elementwise rules (no
reductions or matrix primitives) go further on CPU: the bucket's tensors are cut into
flat pieces packed in tiles of ``TILE`` elements, and the whole plan runs on one tile
before the next (``BucketPlan.run_tiled``), so that the plan's several passes over memory
hit the cache instead of DRAM; bit-identical results, and the temporaries need only
``n_scratch * TILE`` elements of scratch. Only for 4- and 8-byte dtypes: with bfloat16
parameters the tiled step measured slower than the whole-bucket one (half the bytes to
move, and each op converts to float internally, so the per-call overhead of tiles is not
won back); see bench/results/dsl.md. ``compile=True`` runs a
functional form of the rule through ``torch.compile`` instead (fused kernels: the speed
of torch's fused AdamW, after a compilation of seconds to minutes).

Conventions, chosen to match torch.optim:

* ``Opt(params, lr=1e-3, weight_decay=0.0, **hyperparameters)``; hyperparameters default
  to the rule's defaults and live in ``param_groups`` (so LR schedulers and per-group
  overrides work). ``defaults["rule"]`` is the rule's canonical source and
  ``defaults["fingerprint"]`` its functional hash (when ``dsl.fingerprint`` is available).
* Per-parameter state: one buffer per DSL state variable (named as in the rule, zeros,
  in the parameter's dtype) plus ``step``, a float32 0-dim CPU tensor (float64 when the
  default dtype is float64), incremented before the update, so ``step`` is 1 on the first
  update. ``state_dict()``/``load_state_dict()`` are torch's own.
* Parameters without a gradient are skipped (their step does not advance); sparse
  gradients and complex parameters are refused with a clear error.
"""
from __future__ import annotations

import inspect
import math
import numbers
from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .errors import DSLError
from .foreach import BucketPlan, compile_functional, compile_plan
from .parser import parse
from .program import Program

__all__ = ["to_optimizer", "DSLOptimizer", "rule_program"]

#: Elements per tile for the tiled CPU step of elementwise rules (BucketPlan.run_tiled).
TILE = 1 << 18

#: param-group keys the optimizer itself uses; a hyperparameter may not take these names.
GROUP_KEYS = ("params", "lr", "weight_decay", "rule", "fingerprint")
_FORBIDDEN_HYPER = set(GROUP_KEYS) | {"self", "closure", "foreach", "fused", "capturable",
                                       "differentiable", "maximize", "param_names", "initial_lr"}


def rule_program(program_or_source: Program | str) -> Program:
    """A Program from a Program or DSL source text (parsed: the security boundary)."""
    if isinstance(program_or_source, Program):
        return program_or_source
    if isinstance(program_or_source, str):
        return parse(program_or_source)
    raise TypeError(f"expected a dsl.Program or DSL source text, got {type(program_or_source).__name__}")


def check_hyper_names(program: Program) -> None:
    bad = sorted(set(program.hyperparams) & _FORBIDDEN_HYPER)
    if bad:
        raise DSLError(f"hyperparameter name(s) {', '.join(bad)} clash with torch.optim's "
                       f"param-group keys; rename them (e.g. {bad[0]}_)")


def step_dtype() -> torch.dtype:
    """The dtype torch.optim uses for ``state['step']``."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check_number(cls_name: str, key: str, value: Any) -> None:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{cls_name}: '{key}' must be a real number, got {value!r}")
    if math.isnan(float(value)):
        raise ValueError(f"{cls_name}: '{key}' is NaN")
    if key in ("lr", "weight_decay") and float(value) < 0:
        raise ValueError(f"{cls_name}: invalid {key} {value!r} (must be >= 0)")


def _fingerprint_of(program: Program) -> str | None:
    """dsl.fingerprint(program) when that module exists (imported lazily)."""
    import importlib
    try:  # the module, not dsl.fingerprint (which dsl/__init__ binds to the function)
        fp_mod = importlib.import_module(__package__ + ".fingerprint")
    except ImportError:
        return None
    fn = getattr(fp_mod, "fingerprint", None)
    return None if fn is None else str(fn(program))


class DSLOptimizer(torch.optim.Optimizer):
    """Base class of the optimizers made by :func:`to_optimizer` (one subclass per rule)."""

    program: Program  # the rule (public view of _program)
    _program: Program
    _plan: BucketPlan
    _run: Callable
    _uses_scratch: bool = True  # False for the torch.compile'd runner
    #: CPU, elementwise rules: elements per cache tile (0: whole buckets); see BucketPlan.run_tiled
    _tile: int = TILE
    _fingerprint: str | None = None
    _fingerprint_done: bool = False

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.0, **hyperparameters):
        cls = type(self)
        prog = cls._program
        unknown = sorted(set(hyperparameters) - set(prog.hyperparams))
        if unknown:
            valid = ["params", "lr", "weight_decay", *prog.hyperparams]
            raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"valid arguments: {', '.join(valid)}")
        defaults: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
        for name, default in prog.hyperparams.items():
            defaults[name] = hyperparameters.get(name, default)
        for key, value in defaults.items():
            _check_number(cls.__name__, key, value)
        defaults["rule"] = prog.source()
        fp = cls.fingerprint()
        if fp is not None:
            defaults["fingerprint"] = fp
        super().__init__(params, defaults)

    @classmethod
    def fingerprint(cls) -> str | None:
        """The rule's functional fingerprint, computed once per class (None if unavailable)."""
        if not cls._fingerprint_done:
            cls._fingerprint = _fingerprint_of(cls._program)
            cls._fingerprint_done = True
        return cls._fingerprint

    @classmethod
    def plan(cls) -> str:
        """The compiled multi-tensor plan, one foreach call per line (for inspection)."""
        return cls._plan.describe()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        name = type(self).__name__
        for key in ("lr", "weight_decay", *type(self)._program.hyperparams):
            if key in param_group:
                _check_number(name, key, param_group[key])
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if p.is_complex() or not p.is_floating_point():
                self.param_groups.pop()  # leave the optimizer as it was
                raise TypeError(f"{name}: parameters must be real floating-point tensors, got {p.dtype}")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load_state_dict, refusing (before changing anything) a state saved by a
        rule with other state buffers."""
        need = {"step", *type(self)._program.state_names}
        for pid, st in state_dict.get("state", {}).items():
            missing = need - set(st)
            if missing:
                saved_rule = next((g.get("rule") for g in state_dict.get("param_groups", []) if "rule" in g), None)
                hint = f" (it was saved by rule:\n{saved_rule})" if saved_rule else ""
                raise ValueError(f"{type(self).__name__}.load_state_dict: the state of parameter {pid} lacks "
                                 f"{', '.join(sorted(missing))}; this optimizer's rule keeps "
                                 f"{', '.join(sorted(need))}{hint}")
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # keys a foreign or older state_dict lacks: the defaults
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    def _scratch_for(self, W: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """The plan's scratch tensors for these parameters (created once, reused every step).

        On CPU the temporaries of a step live here instead of in fresh allocations: freshly
        allocated multi-MB tensors are page-faulted in on every step, which measured here
        cost more than the arithmetic. Memory: ``n_scratch`` extra tensors per parameter
        (AdamW: one), instead of the same amount allocated and freed on every step.
        """
        store = self.__dict__.get("_scratch")
        if store is None:
            store = self.__dict__["_scratch"] = WeakIdKeyDictionary()
        n = type(self)._plan.n_scratch
        out: list[list[torch.Tensor]] = [[] for _ in range(n)]
        for p in W:
            bufs = store.get(p)
            if bufs is None or bufs[0].shape != p.shape or bufs[0].dtype != p.dtype:
                bufs = store[p] = [torch.empty_like(p, memory_format=torch.preserve_format) for _ in range(n)]
            for lst, b in zip(out, bufs):
                lst.append(b)
        return out

    def _tile_scratch(self, like: torch.Tensor, tile: int) -> list[torch.Tensor]:
        """``n_scratch`` flat tensors of ``tile`` elements per (device, dtype), reused by
        every tile of every step (they stay in cache)."""
        store = self.__dict__.setdefault("_tile_bufs", {})
        key = (like.device, like.dtype)
        bufs = store.get(key)
        n = type(self)._plan.n_scratch
        if bufs is None or len(bufs) < n or (n and bufs[0].numel() < tile):
            bufs = store[key] = [torch.empty(tile, dtype=like.dtype, device=like.device) for _ in range(n)]
        return bufs

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_scratch", None)
        state.pop("_tile_bufs", None)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        cls = type(self)
        names = cls._program.state_names
        hyper_names = tuple(cls._program.hyperparams)
        scalar_names = cls._plan.scalar_input_names
        run = cls._run
        n_scratch = cls._plan.n_scratch if cls._uses_scratch else 0
        sdt = step_dtype()
        for group in self.param_groups:
            params, grads, steps, bufs = [], [], [], []
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    raise RuntimeError(f"{cls.__name__} does not support sparse gradients; use dense "
                                       "gradients (e.g. nn.Embedding(sparse=False))")
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0, dtype=sdt)
                    for n in names:
                        st[n] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(g)
                steps.append(st["step"])
                bufs.append(st)
            if not params:
                continue
            torch._foreach_add_(steps, 1.0)
            buckets: dict[tuple, list] = {}
            for p, g, s, st in zip(params, grads, steps, bufs):
                key = (p.device, p.dtype, s.item())
                b = buckets.get(key)
                if b is None:
                    b = buckets[key] = [[], [], [[] for _ in names]]
                b[0].append(p)
                b[1].append(g)
                for lst, n in zip(b[2], names):
                    lst.append(st[n])
            env = {"lr": group["lr"], "wd": group["weight_decay"]}
            for h in hyper_names:
                env[h] = group[h]
            tile = self._tile if cls._uses_scratch and cls._plan.elementwise else 0
            for (device, _, step), (W, G, states) in buckets.items():
                env["step"] = step
                scalars = [env[n] for n in scalar_names]
                if device.type == "cpu" and tile and W[0].element_size() >= 4 \
                        and sum(t.numel() for t in W) > 2 * tile:
                    if cls._plan.run_tiled(W, G, states, scalars, self._tile_scratch(W[0], tile), tile):
                        continue
                # scratch for 4/8-byte dtypes only: with bfloat16/float16 the copy into scratch
                # measured slower than a fresh allocation (half the bytes to page in)
                scratch = self._scratch_for(W) if device.type == "cpu" and n_scratch \
                    and W[0].element_size() >= 4 else None
                run(W, G, states, scalars, scratch)
        return loss


_CACHE: OrderedDict[tuple[str, str, bool], type] = OrderedDict()  # the last classes made, by rule
_CACHE_SIZE = 64


def _class_name(program: Program) -> str:
    parts = [p for p in program.name.split("_") if p]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "DSLRule"


def _compiled_runner(plan: BucketPlan, name: str) -> Callable:
    """The rule's functional per-tensor form (dsl.foreach.FunctionalPlan) under torch.compile;
    the scalars are evaluated in Python and passed as one float64 tensor (no recompiles
    when lr or step change).

    Fails early with a clear message where torch.compile cannot work."""
    import shutil
    if not hasattr(torch, "compile"):
        raise RuntimeError("compile=True needs torch.compile (torch >= 2.0); use compile=False")
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise RuntimeError("compile=True needs a C++ compiler (g++ or clang++) for TorchInductor's CPU "
                           "code; install one (e.g. apt-get install g++) or use compile=False")
    fplan = compile_functional(plan.program)
    apply = torch.compile(fplan.apply)
    scalars, slots = fplan.scalars, fplan.c_slots

    def run(W, G, states, scalar_inputs, scratch=None):
        sv = scalars(scalar_inputs)
        svt = torch.tensor([sv[i] for i in slots], dtype=torch.float64)
        apply(W, G, states, svt.to(W[0].device))
    run.__name__ = f"{name}_compiled_run"
    return run


def to_optimizer(program_or_source: Program | str, compile: bool = False) -> type[torch.optim.Optimizer]:
    """A ``torch.optim.Optimizer`` subclass running the rule (see the module docstring).

    ``compile=True`` wraps the per-bucket update in ``torch.compile`` (for finalists only:
    compiling costs tens of seconds per rule and shape set).
    """
    program = rule_program(program_or_source)
    check_hyper_names(program)
    name = _class_name(program)
    key = (program.source(), name, bool(compile))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    plan = compile_plan(program)
    run = _compiled_runner(plan, name) if compile else plan.run
    doc = (f"Optimizer compiled by optforge from the update rule:\n\n"
           + "\n".join("    " + line for line in program.source().splitlines())
           + f"\n\nHyperparameters (constructor / param-group keys): lr, weight_decay"
           + "".join(f", {k}={v!r}" for k, v in program.hyperparams.items())
           + ".\nState per parameter: step" + "".join(f", {s}" for s in program.state_names) + ".\n")
    cls = type(name, (DSLOptimizer,), {
        "_program": program, "_plan": plan, "_run": staticmethod(run), "__doc__": doc,
        "_uses_scratch": not compile, "program": program,
        "__module__": __name__, "__qualname__": name,
    })
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("lr", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1e-3),
              inspect.Parameter("weight_decay", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0.0)]
    params += [inspect.Parameter(h, inspect.Parameter.KEYWORD_ONLY, default=v)
               for h, v in program.hyperparams.items()]

    def __init__(self, params, lr=1e-3, weight_decay=0.0, **hyperparameters):  # noqa: N807
        DSLOptimizer.__init__(self, params, lr, weight_decay, **hyperparameters)

    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    cls.__init__ = __init__
    _CACHE[key] = cls
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return cls
