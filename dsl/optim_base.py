"""The torch.optim side of a rule's optimizer, one code for compiled and exported classes.

``dsl.to_optimizer``'s classes subclass ``RuleOptimizer`` from here; ``dsl.export_python``
copies the text of this module below the ``EXPORTED`` marker into every exported module
(which must depend on torch alone). So both construct, validate, step, save and load the same
way, and the only difference is the hook that runs the rule on a bucket of tensors.

What it adds to ``torch.optim.Optimizer``, as torch's own optimizers do:

* argument checks at construction and in ``add_param_group``: ``TypeError`` for a
  non-number, ``ValueError`` (naming the argument and its allowed range) for a value out of
  range (``RANGES``: lr and weight_decay finite and >= 0, the rule's ranges from
  ``dsl.ranges``), NaN, or a tensor of more than one element;
* torch's flags: ``maximize`` (the gradient negated), ``foreach`` (None/True: one
  multi-tensor step per bucket; False: parameter by parameter), and ``capturable``,
  ``differentiable``, ``fused``, which are refused when true (ValueError saying why);
* complex parameters as torch treats them: the rule runs on ``torch.view_as_real`` of the
  parameter, its gradient and its state (reductions such as ``norm`` then see the real view);
* sparse gradients refused (``RuntimeError``), as torch's dense optimizers do;
* ``load_state_dict`` that refuses a state without the rule's buffers, turns a Python-number
  ``step`` into a tensor (older torch versions and other libraries write numbers), and adds
  to the param groups only keys they lack.
"""
# EXPORTED: everything below this line is copied verbatim into exported modules.
import math
import numbers

import torch
from torch.utils.weak import WeakIdKeyDictionary

#: torch.optim's flags and their defaults (param-group keys, as in torch.optim.Adam)
FLAG_DEFAULTS = {"maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None}
#: why a flag may not be true
REFUSED_FLAGS = {
    "capturable": "CUDA-graph capture is not supported: the step reads each parameter's step count on "
                  "the host; use capturable=False",
    "differentiable": "differentiating through the step is not supported: step() updates parameters and "
                      "state in place under torch.no_grad(); use differentiable=False",
    "fused": "there is no fused kernel for this rule; use fused=None (optforge's "
             "dsl.to_optimizer(rule, compile=True) fuses a rule with torch.compile)",
}
#: elements per cache tile for the tiled CPU step of elementwise rules (0: whole buckets)
TILE = 1 << 18
#: a param group's ``role`` (what the rule's is_matrix, is_embedding, is_head, is_vector say);
#: without one, a parameter of 2 or more dimensions is a hidden matrix, a smaller one a vector
ROLES = ("matrix", "embedding", "head", "vector")


def default_role(p):
    return "matrix" if p.dim() >= 2 else "vector"


def short_rule(source):
    """A rule's source in one line for printouts: its def line and its size."""
    lines = [ln for ln in str(source).splitlines() if ln.strip()]
    if not lines:
        return repr(source)
    head = lines[0].strip().rstrip(":")
    if len(head) > 72:
        head = head[:69] + "..."
    return f"{head} ({max(len(lines) - 2, 0)} statements)"


def step_dtype():
    """The dtype torch.optim uses for ``state['step']``."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def tile_views(lists, scratch, tile):
    """Per tile of ``tile`` elements: (views of each list's tensors, views of each scratch tensor).

    The tensors of ``lists`` (parameters, gradients, state buffers: contiguous, the first list
    sets the sizes) are cut into flat pieces packed into tiles, so an elementwise step can run
    tile by tile with its intermediate passes in cache (CPU, large tensors). ``scratch``: flat
    tensors of at least ``tile`` elements, viewed in the same pieces. Both the compiled plans
    (dsl.foreach's ``run_tiled``) and exported modules step through this."""
    flat = [[t.view(-1) for t in lst] for lst in lists]
    pieces, filled = [], 0

    def views():
        sviews = []
        for sc in scratch:
            vs, o = [], 0
            for _, a, b in pieces:
                vs.append(sc[o:o + b - a])
                o += b - a
            sviews.append(vs)
        return [[fl[i][a:b] for i, a, b in pieces] for fl in flat], sviews

    for i, t in enumerate(lists[0]):
        n, a = t.numel(), 0
        while a < n:
            b = min(n, a + tile - filled)
            pieces.append((i, a, b))
            filled += b - a
            a = b
            if filled >= tile:
                yield views()
                pieces, filled = [], 0
    if pieces:
        yield views()


def interval_text(lo, hi, lo_open, hi_open):
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"


def in_range(v, lo, hi, lo_open, hi_open):
    """v in the interval; an open unbounded side excludes infinity ("[0, inf)": finite)."""
    if math.isnan(v):
        return False
    if lo is None:
        lo_ok = not (lo_open and v == -math.inf)
    else:
        lo_ok = v > lo if lo_open else v >= lo
    if hi is None:
        hi_ok = not (hi_open and v == math.inf)
    else:
        hi_ok = v < hi if hi_open else v <= hi
    return lo_ok and hi_ok


def check_value(cls_name, key, value, ranges):
    """The value as a float, or TypeError / ValueError naming ``key`` and what it allows."""
    v = value
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{cls_name}: Tensor {key} must be 1-element, got shape {tuple(v.shape)}")
        if v.is_complex() or v.dtype == torch.bool:
            raise TypeError(f"{cls_name}: '{key}' must be a real number, got a {v.dtype} tensor")
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{cls_name}: '{key}' must be a real number, got {value!r}")
    v = float(v)
    if math.isnan(v):
        raise ValueError(f"{cls_name}: invalid {key} {value!r}: it is NaN")
    for lo, hi, lo_open, hi_open, why in ranges:
        if not in_range(v, lo, hi, lo_open, hi_open):
            raise ValueError(f"{cls_name}: invalid {key} {value!r}: must be in "
                             f"{interval_text(lo, hi, lo_open, hi_open)} ({why})")
    return v


def check_flag(cls_name, key, value):
    if key == "foreach":
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{cls_name}: 'foreach' must be None, True or False, got {value!r}")
        return
    if key == "fused" and value is None:
        return
    if not isinstance(value, bool):
        raise TypeError(f"{cls_name}: '{key}' must be True or False, got {value!r}")
    if value and key in REFUSED_FLAGS:
        raise ValueError(f"{cls_name}: {key}=True is not supported: {REFUSED_FLAGS[key]}")


class RuleOptimizer(torch.optim.Optimizer):
    """A torch.optim optimizer running an update rule; subclasses set the class attributes and
    the three hooks ``_scalars``, ``_apply`` and ``_apply_tiled``."""

    RULE = ""               # the rule's canonical source
    HYPERPARAMETERS = {}    # name -> default
    STATE = ()              # the state tensors, per parameter, besides ``step``
    RANGES = {}             # argument -> ((lo, hi, lo_open, hi_open, why), ...)
    N_SCRATCH = 0           # scratch tensors per parameter for the step's temporaries (CPU)
    ELEMENTWISE = False     # no reductions or matrix primitives: the step may run tile by tile
    PER_PARAM = False       # the rule uses shapes: one parameter at a time through _apply_param
    GLOBAL_NORMS = ()       # inputs ("g", "w") whose group-wide L2 norm the rule reads
    _tile = TILE

    def __init__(self, params, lr=1e-3, weight_decay=0.0, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None, **hyperparameters):
        cls = type(self)
        name = cls.__name__
        hyperparameters = cls._split_betas(hyperparameters)
        unknown = sorted(set(hyperparameters) - set(cls.HYPERPARAMETERS))
        if unknown:
            valid = ["params", "lr", "weight_decay", *cls.HYPERPARAMETERS, *cls._betas_arg(), *FLAG_DEFAULTS]
            raise TypeError(f"{name}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"valid arguments: {', '.join(valid)}")
        defaults = {"lr": lr, "weight_decay": weight_decay}
        for h, default in cls.HYPERPARAMETERS.items():
            defaults[h] = hyperparameters.get(h, default)
        for key, value in defaults.items():
            check_value(name, key, value, cls.RANGES.get(key, ()))
        flags = {"maximize": maximize, "foreach": foreach, "capturable": capturable,
                 "differentiable": differentiable, "fused": fused}
        for key, value in flags.items():
            check_flag(name, key, value)
        defaults.update(flags)
        defaults["rule"] = cls.RULE
        fp = cls.fingerprint()
        if fp is not None:
            defaults["fingerprint"] = fp
        super().__init__(params, defaults)

    @classmethod
    def fingerprint(cls):
        """The rule's functional fingerprint (None if unknown)."""
        return getattr(cls, "FINGERPRINT", None)

    @classmethod
    def _betas_arg(cls):
        """("betas",) when the rule has a beta1/beta2 pair (torch.optim's betas=(b1, b2))."""
        hp = cls.HYPERPARAMETERS
        return ("betas",) if "beta1" in hp and "beta2" in hp and "betas" not in hp else ()

    @classmethod
    def _split_betas(cls, values):
        """``betas=(b1, b2)`` as beta1=b1, beta2=b2 (torch.optim's spelling); other keys unchanged."""
        if "betas" not in values or not cls._betas_arg():
            return values
        values = dict(values)
        betas = values.pop("betas")
        if betas is None:
            return values
        if "beta1" in values or "beta2" in values:
            raise TypeError(f"{cls.__name__}: give either betas=(beta1, beta2) or beta1=/beta2=, not both")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{cls.__name__}: betas must be a pair (beta1, beta2), got {betas!r}")
        values["beta1"], values["beta2"] = betas
        return values

    def __repr__(self):
        """torch.optim's printout, with each group's rule as one line instead of its whole source."""
        out = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            out.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    value = short_rule(group[key]) if key == "rule" else group[key]
                    out.append(f"    {key}: {value}")
        out.append(")")
        return "\n".join(out)

    def add_param_group(self, param_group):
        cls = type(self)
        name = cls.__name__
        if isinstance(param_group, dict) and "betas" in param_group and cls._betas_arg():
            param_group = cls._split_betas(param_group)
        if isinstance(param_group, dict) and "role" in param_group and param_group["role"] not in ROLES:
            raise ValueError(f"{name}: invalid role {param_group['role']!r}: must be one of {', '.join(ROLES)} "
                             "(or no role: 2-D and larger parameters are matrices, the others vectors)")
        for key in ("lr", "weight_decay", *cls.HYPERPARAMETERS):
            if key in param_group:
                check_value(name, key, param_group[key], cls.RANGES.get(key, ()))
        for key in FLAG_DEFAULTS:
            if key in param_group:
                check_flag(name, key, param_group[key])
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if not (p.is_floating_point() or p.is_complex()):
                self.param_groups.pop()  # leave the optimizer as it was
                raise TypeError(f"{name}: parameters must be floating-point tensors (real or complex), "
                                f"got {p.dtype}")

    def load_state_dict(self, state_dict):
        """torch's load_state_dict, refusing (before changing anything) a state saved by a rule
        with other state buffers or with a refused flag set; a number ``step`` becomes a tensor."""
        name = type(self).__name__
        need = {"step", *type(self).STATE}
        for pid, st in state_dict.get("state", {}).items():
            missing = need - set(st)
            if missing:
                saved_rule = next((g.get("rule") for g in state_dict.get("param_groups", []) if "rule" in g), None)
                hint = f" (it was saved by rule:\n{saved_rule})" if saved_rule else ""
                raise ValueError(f"{name}.load_state_dict: the state of parameter {pid} lacks "
                                 f"{', '.join(sorted(missing))}; this optimizer's rule keeps "
                                 f"{', '.join(sorted(need))}{hint}")
        for group in state_dict.get("param_groups", []):
            for key in REFUSED_FLAGS:
                if group.get(key):
                    raise ValueError(f"{name}.load_state_dict: the state was saved with {key}=True; "
                                     f"{REFUSED_FLAGS[key]}")
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # keys a foreign or older state_dict lacks: the defaults
            for key, value in self.defaults.items():
                if key not in group:
                    group[key] = value
            for p in group["params"]:
                st = self.state.get(p)
                if st and "step" in st and not torch.is_tensor(st["step"]):
                    st["step"] = torch.tensor(float(st["step"]), dtype=step_dtype())

    # -- the step -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        cls = type(self)
        names = cls.STATE
        hyper = tuple(cls.HYPERPARAMETERS)
        for group in self.param_groups:
            one_by_one = group.get("foreach") is False
            live = []  # (param, grad, state) of the parameters with a gradient
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    raise RuntimeError(f"{cls.__name__} does not support sparse gradients; use dense "
                                       "gradients (e.g. nn.Embedding(sparse=False))")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=step_dtype())
                    for n in names:
                        state[n] = self._init_state(p, n)
                live.append((p, g, state))
            if not live:
                continue
            torch._foreach_add_([s["step"] for _, _, s in live], 1.0)   # one call per group, as torch.optim
            if cls.PER_PARAM:
                self._step_per_param(group, live)
                continue
            buckets = {}  # same device, dtype and step count (and parameter, for foreach=False)
            for p, g, state in live:
                w, bufs = p, [state[n] for n in names]
                if torch.is_complex(p):  # as torch.optim: the rule sees the real view
                    w, g = torch.view_as_real(p), torch.view_as_real(g)
                    bufs = [torch.view_as_real(b) if torch.is_complex(b) else b for b in bufs]
                key = (w.device, w.dtype, float(state["step"])) + ((len(buckets),) if one_by_one else ())
                b = buckets.get(key)
                if b is None:
                    b = buckets[key] = ([], [], [[] for _ in names], [])
                b[0].append(w)
                b[1].append(g)
                for lst, t in zip(b[2], bufs):
                    lst.append(t)
                b[3].append(p)
            env = {"lr": _number(group["lr"]), "wd": _number(group["weight_decay"])}
            for h in hyper:
                env[h] = _number(group[h])
            for key, (W, G, states, P) in buckets.items():
                if group.get("maximize", False):
                    G = list(torch._foreach_neg(G))
                env["step"] = key[2]
                self._update(P, W, G, states, env)
        return loss

    def _init_state(self, p, name):
        """A new state buffer for parameter ``p`` (zeros like p; shaped rules override this)."""
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _step_per_param(self, group, live):
        """Rules using shapes: each parameter on its own (its role, the group's norms)."""
        cls = type(self)
        env = {"lr": _number(group["lr"]), "wd": _number(group["weight_decay"])}
        for h in cls.HYPERPARAMETERS:
            env[h] = _number(group[h])
        norms = {}
        for nm in cls.GLOBAL_NORMS:  # on the parameters' device, no host sync: sqrt(sum of squared norms)
            ts = [g for _, g, _ in live] if nm == "g" else [p.detach() for p, _, _ in live]
            ts = [torch.view_as_real(t) if torch.is_complex(t) else t for t in ts]
            dt = torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32
            parts = [torch.linalg.vector_norm(t, dtype=dt).to(ts[0].device) for t in ts]
            norms[nm] = torch.linalg.vector_norm(torch.stack(parts))
        for p, g, state in live:
            w, bufs = p, [state[n] for n in cls.STATE]
            if torch.is_complex(p):
                w, g = torch.view_as_real(p), torch.view_as_real(g)
                bufs = [torch.view_as_real(b) if torch.is_complex(b) else b for b in bufs]
            if group.get("maximize", False):
                g = -g
            role = group.get("role") or default_role(w)  # complex: by its real view, which the rule sees
            self._apply_param(w, g, bufs, dict(env, step=float(state["step"])), role, norms)

    def _apply_param(self, w, g, bufs, env, role, norms):
        """The rule on one parameter (its real view), in place; shaped rules implement it."""
        raise NotImplementedError

    def _update(self, P, W, G, states, env):
        """The rule on one bucket: tile by tile on CPU for elementwise rules, else the whole
        bucket with temporaries in reused scratch tensors (CPU, 4- and 8-byte dtypes: fresh
        multi-MB tensors page-fault on every step; 2-byte ones measured faster allocating)."""
        cls = type(self)
        scalars = self._scalars(env)
        on_cpu, wide = W[0].device.type == "cpu", W[0].element_size() >= 4
        tile = self._tile if cls.ELEMENTWISE else 0
        if on_cpu and tile and wide and sum(t.numel() for t in W) > 2 * tile \
                and all(t.is_contiguous() for lst in (W, G, *states) for t in lst):
            self._apply_tiled(W, G, states, scalars, self._tile_scratch(W[0], tile), tile)
            return
        n = cls.N_SCRATCH
        scratch = self._scratch_for(P, W, n) if on_cpu and n and wide else None
        self._apply(W, G, states, scalars, scratch)

    # hooks: what a subclass runs
    def _scalars(self, env):
        """The step's scalars from ``env`` (lr, wd, step, hyperparameters as floats)."""
        raise NotImplementedError

    def _apply(self, W, G, states, scalars, scratch):
        """The rule on lists of tensors, in place; ``scratch``: N_SCRATCH lists or None."""
        raise NotImplementedError

    def _apply_tiled(self, W, G, states, scalars, scratch, tile):
        """The rule on contiguous lists one tile of ``tile`` elements at a time."""
        raise NotImplementedError

    # -- reused buffers (not part of the state_dict) ---------------------------------------------
    def _scratch_for(self, P, W, n):
        """``n`` lists of scratch tensors shaped like W (created once per parameter, reused)."""
        store = self.__dict__.get("_scratch")
        if store is None:
            store = self.__dict__["_scratch"] = WeakIdKeyDictionary()
        out = [[] for _ in range(n)]
        for p, w in zip(P, W):
            bufs = store.get(p)
            if bufs is None or len(bufs) != n or bufs[0].shape != w.shape or bufs[0].dtype != w.dtype:
                bufs = store[p] = [torch.empty_like(w, memory_format=torch.preserve_format) for _ in range(n)]
            for lst, buf in zip(out, bufs):
                lst.append(buf)
        return out

    def _tile_scratch(self, like, tile):
        """N_SCRATCH flat tensors of ``tile`` elements per (device, dtype), reused by every tile."""
        store = self.__dict__.setdefault("_tile_bufs", {})
        key = (like.device, like.dtype)
        bufs = store.get(key)
        n = type(self).N_SCRATCH
        if bufs is None or len(bufs) < n or (n and bufs[0].numel() < tile):
            bufs = store[key] = [torch.empty(tile, dtype=like.dtype, device=like.device) for _ in range(n)]
        return bufs

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_scratch", None)
        state.pop("_tile_bufs", None)
        return state


def _number(v):
    """A group value as a Python float (a 1-element tensor lr, as schedulers keep it, too)."""
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)
