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
flat pieces packed in tiles of ``dsl.optim_base.TILE`` elements, and the whole plan runs on one tile
before the next (``BucketPlan.run_tiled``), so that the plan's several passes over memory
hit the cache instead of DRAM; bit-identical results, and the temporaries need only
``n_scratch * TILE`` elements of scratch. Only for 4- and 8-byte dtypes: with bfloat16
parameters the tiled step measured slower than the whole-bucket one (half the bytes to
move, and each op converts to float internally, so the per-call overhead of tiles is not
won back); see bench/results/dsl.md. ``compile=True`` runs a
functional form of the rule through ``torch.compile`` instead (fused kernels: the speed
of torch's fused AdamW, after a compilation of seconds to minutes).

Rules using shapes (``dsl.kinds.extensions``: shaped or initialised state, role inputs, row/col
reductions, matrix algebra, ``refresh``, ``global_norm``, ...) get a ``ShapedOptimizer`` instead:
no foreach plan, one parameter at a time through the reference interpreter's shaped path, with
the parameter's role (its group's ``role``, else by dimension) and the group's norms; plans of the
other rules are exactly what they were before shapes existed.

Conventions, chosen to match torch.optim (the torch.optim side is ``dsl.optim_base``, the
same code exported modules carry):

* ``Opt(params, lr=1e-3, weight_decay=0.0, **hyperparameters, maximize=False, foreach=None,
  capturable=False, differentiable=False, fused=None)``; hyperparameters default to the
  rule's defaults and live in ``param_groups`` with the flags (so LR schedulers and
  per-group overrides work). ``defaults["rule"]`` is the rule's canonical source and
  ``defaults["fingerprint"]`` its functional hash (when ``dsl.fingerprint`` is available).
* Arguments are checked as torch checks its own: ``TypeError`` for a non-number,
  ``ValueError`` naming the argument and its range for lr / weight_decay that are not finite
  and >= 0, a tensor lr of more than one element, NaN, or a value outside the rule's ranges
  (``dsl.ranges``: declared by library rules, derived from use for the others).
* Per-parameter state: one buffer per DSL state variable (named as in the rule, zeros,
  in the parameter's dtype) plus ``step``, a float32 0-dim CPU tensor (float64 when the
  default dtype is float64), incremented before the update, so ``step`` is 1 on the first
  update. ``state_dict()``/``load_state_dict()`` are torch's own (a number ``step`` loads
  as a tensor; the groups gain only keys they lack).
* Parameters without a gradient are skipped (their step does not advance). ``maximize``
  negates the gradient; ``foreach=False`` steps parameter by parameter; complex parameters
  run as their ``torch.view_as_real`` view, as in torch.optim. Sparse gradients and
  ``capturable``/``differentiable``/``fused=True`` are refused with a message saying why.
"""
from __future__ import annotations

import inspect
import shutil
from collections import OrderedDict
from collections.abc import Callable

import torch

from . import shaped
from .errors import DSLError
from .fingerprint import fingerprint
from .foreach import BucketPlan, compile_functional, compile_plan
from .interpret import run_rule
from .kinds import extensions
from .optim_base import FLAG_DEFAULTS, RuleOptimizer
from .parser import parse
from .primitives import PRIMITIVES
from .program import Call, Program, walk
from .ranges import hyper_ranges

__all__ = ["to_optimizer", "DSLOptimizer", "ShapedOptimizer", "rule_program", "check_hyper_names", "range_table",
           "class_name", "global_norm_inputs"]

#: param-group keys the optimizer itself uses; a hyperparameter may not take these names.
GROUP_KEYS = ("params", "lr", "weight_decay", "rule", "fingerprint")
_FORBIDDEN_HYPER = set(GROUP_KEYS) | set(FLAG_DEFAULTS) | {"self", "closure", "param_names", "initial_lr"}


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


def range_table(program: Program) -> dict[str, tuple[tuple, ...]]:
    """The argument checks of the rule's optimizer (dsl.ranges) as plain tuples."""
    return {k: tuple(r.as_tuple() for r in rs) for k, rs in hyper_ranges(program).items()}


class DSLOptimizer(RuleOptimizer):
    """Base class of the optimizers made by :func:`to_optimizer` (one subclass per rule).

    Construction, checks, flags, state and ``step`` are ``dsl.optim_base.RuleOptimizer``'s
    (shared with exported modules); this class runs the compiled plan on each bucket."""

    program: Program  # the rule (public view of _program)
    _program: Program
    _plan: BucketPlan
    _run: Callable
    _fingerprint: str | None = None

    @classmethod
    def fingerprint(cls) -> str:
        """The rule's functional fingerprint (dsl.fingerprint), computed once per class."""
        if cls._fingerprint is None:
            cls._fingerprint = fingerprint(cls._program)
        return cls._fingerprint

    @classmethod
    def plan(cls) -> str:
        """The compiled multi-tensor plan, one foreach call per line (for inspection)."""
        return cls._plan.describe()

    def _scalars(self, env: dict[str, float]) -> list[float]:
        return [env[n] for n in type(self)._plan.scalar_input_names]

    def _apply(self, W, G, states, scalars, scratch) -> None:
        type(self)._run(W, G, states, scalars, scratch)

    def _apply_tiled(self, W, G, states, scalars, scratch, tile) -> None:
        type(self)._plan.run_tiled(W, G, states, scalars, scratch, tile)


class ShapedOptimizer(DSLOptimizer):
    """Base class of the optimizers of rules using shapes (``dsl.kinds.extensions``): one parameter
    at a time through the reference interpreter's shaped path (``dsl.interpret.run_shaped``), with
    state of the declared shapes and initial values, the parameter's role and the group's norms."""

    PER_PARAM = True
    STATE_SPEC: dict = {}  # state name -> (kind, initial value)

    def _init_state(self, p, name):
        kind, init = type(self).STATE_SPEC[name]
        w = torch.view_as_real(p) if torch.is_complex(p) else p
        st = shaped.new_state(kind, init, w.detach())
        return torch.view_as_complex(st) if torch.is_complex(p) and kind == "tensor" else st

    def _apply_param(self, w, g, bufs, env, role, norms):
        cls = type(self)
        hyper = {h: env[h] for h in cls.HYPERPARAMETERS}
        new_w, new_state = run_rule(cls._program, w, g, dict(zip(cls.STATE, bufs)), lr=env["lr"], wd=env["wd"],
                                    step=env["step"], hyper=hyper, role=role, global_norms=norms)
        w.copy_(new_w)
        for name, buf in zip(cls.STATE, bufs):
            buf.copy_(new_state[name])


_CACHE: OrderedDict[tuple[str, str, bool], type] = OrderedDict()  # the last classes made, by rule
_CACHE_SIZE = 64

#: how torch.optim spells the optimizers a rule may be named after (words of a snake_case name)
_SPELLING = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "nadam": "NAdam", "nadamw": "NAdamW", "radam": "RAdam",
    "adamax": "Adamax", "adagrad": "Adagrad", "adadelta": "Adadelta", "rmsprop": "RMSprop", "lbfgs": "LBFGS",
    "asgd": "ASGD", "rprop": "Rprop", "lamb": "LAMB", "lars": "LARS", "adabelief": "AdaBelief", "adamp": "AdamP",
    "adafactor": "Adafactor", "ademamix": "AdEMAMix", "exadam": "EXAdam", "mars": "MARS", "spam": "SPAM",
    "soap": "SOAP", "galore": "GaLore", "apollo": "APOLLO", "cosmos": "COSMOS", "swan": "SWAN", "psgd": "PSGD",
    "rms": "RMS", "ema": "EMA", "nag": "NAG",
}


def class_name(rule_name: str) -> str:
    """torch.optim's class-name style for a rule name: ``adamw`` -> ``AdamW``, ``sgd_momentum`` ->
    ``SGDMomentum``, other words capitalized (``clipped_rms_momentum`` -> ``ClippedRMSMomentum``)."""
    parts = [p for p in str(rule_name).replace("-", "_").split("_") if p]
    name = "".join(_SPELLING.get(p.lower(), p[:1].upper() + p[1:]) for p in parts)
    return name if name.isidentifier() else "DSLRule"


def _class_name(program: Program) -> str:
    return class_name(program.name)


def global_norm_inputs(program: Program) -> tuple[str, ...]:
    """The inputs ("g", "w") whose group-wide norm the rule reads (``global_norm``)."""
    return tuple(sorted({c.args[0].id for s in program.body for c in walk(s.value)
                         if isinstance(c, Call) and PRIMITIVES[c.fn].kind == "group"}))


def _compiled_runner(plan: BucketPlan, name: str) -> Callable:
    """The rule's functional per-tensor form (dsl.foreach.FunctionalPlan) under torch.compile;
    the scalars are evaluated in Python and passed as one float64 tensor (no recompiles
    when lr or step change).

    Fails early with a clear message where torch.compile cannot work."""
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
    ext = extensions(program)
    if ext:
        if compile:
            raise DSLError(f"compile=True is not available for rules using shapes ({', '.join(ext)}): they run "
                           "parameter by parameter; use compile=False")
        return _cache(key, _shaped_class(program, name))
    plan = compile_plan(program)
    run = _compiled_runner(plan, name) if compile else plan.run
    doc = ("Optimizer compiled by optforge from the update rule:\n\n"
           + "\n".join("    " + line for line in program.source().splitlines())
           + "\n\nHyperparameters (constructor / param-group keys): lr, weight_decay"
           + "".join(f", {k}={v!r}" for k, v in program.hyperparams.items())
           + "; flags: " + ", ".join(f"{k}={v!r}" for k, v in FLAG_DEFAULTS.items())
           + ".\nState per parameter: step" + "".join(f", {s}" for s in program.state_names) + ".\n")
    cls = type(name, (DSLOptimizer,), {
        "_program": program, "_plan": plan, "_run": staticmethod(run), "__doc__": doc,
        "program": program,
        "RULE": program.source(), "HYPERPARAMETERS": dict(program.hyperparams),
        "STATE": tuple(program.state_names), "RANGES": range_table(program),
        "N_SCRATCH": plan.n_scratch if not compile else 0, "ELEMENTWISE": plan.elementwise and not compile,
        "__module__": __name__, "__qualname__": name,
    })
    return _cache(key, _with_signature(cls, program, name))


def _shaped_class(program: Program, name: str) -> type:
    doc = ("Optimizer compiled by optforge from the update rule (shapes: parameter by parameter):\n\n"
           + "\n".join("    " + line for line in program.source().splitlines()) + "\n")
    kinds, inits = program.state_kinds, program.state_inits
    cls = type(name, (ShapedOptimizer,), {
        "_program": program, "__doc__": doc, "program": program, "RULE": program.source(),
        "HYPERPARAMETERS": dict(program.hyperparams), "STATE": tuple(program.state_names),
        "STATE_SPEC": {s: (kinds[s], inits[s]) for s in program.state_names}, "RANGES": range_table(program),
        "GLOBAL_NORMS": global_norm_inputs(program), "__module__": __name__, "__qualname__": name,
    })
    return _with_signature(cls, program, name)


def _cache(key, cls: type) -> type:
    _CACHE[key] = cls
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return cls


def _with_signature(cls: type, program: Program, name: str) -> type:
    """The class with an ``__init__`` whose signature names every argument (for help() and IDEs)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("lr", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1e-3),
              inspect.Parameter("weight_decay", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0.0)]
    params += [inspect.Parameter(h, inspect.Parameter.KEYWORD_ONLY, default=v)
               for h, v in program.hyperparams.items()]
    params += [inspect.Parameter(b, inspect.Parameter.KEYWORD_ONLY, default=None) for b in cls._betas_arg()]
    params += [inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY, default=v) for f, v in FLAG_DEFAULTS.items()]

    def __init__(self, params, lr=1e-3, weight_decay=0.0, **kwargs):  # noqa: N807
        DSLOptimizer.__init__(self, params, lr, weight_decay, **kwargs)

    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    cls.__init__ = __init__
    return cls
