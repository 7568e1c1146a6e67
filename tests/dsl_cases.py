"""Rule sources and runners shared by the dsl tests (imported by name).

``ADAMW`` is the library's text; ``LION``, ``MUONISH``, ``EXOTIC`` and ``DEAD_STATE`` are written here
(EXOTIC: every primitive and kind combination the lowering distinguishes; DEAD_STATE: a dead state
statement, for the checker and simplify tests). ``Problem`` is a noisy diagonal
quadratic; ``run_reference`` steps the interpreter, ``run_compiled`` a compiled optimizer;
``programs`` draws random rules for property tests.
"""
import importlib.util
import io
from pathlib import Path

import torch
from hypothesis import strategies as st

from dsl import export_python, run_rule
from dsl.library import RULES
from support import ADAMW

LION = """def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):
    u = sign(interp(g, m, beta1))
    m = interp(g, m, beta2)
    w = w - lr * (u + wd * w)
    return w, m
"""
# the Lion paper's 'cosh' line: v is recomputed from scratch before any read, so its last statement
# (line 5) is dead and v is a dead state (the checker reports both; simplify drops them)
DEAD_STATE = """def f(w, g, m, v, lr):
    v = g * 2
    m = interp(g, m, 0.9)
    w = w - lr * (m + v)
    v = tanh(m)
    return w, m, v
"""
MUONISH = """def muonish(w, g, buf, lr, wd, momentum=0.95):
    w = w * (1 - lr * wd)
    buf = interp(g, buf, momentum)
    u = orthogonalize(interp(g, buf, momentum))
    w = w - lr * u
    return w, buf
"""
# every primitive and every kind combination the lowering distinguishes (tensor, per-tensor
# scalar from a reduction, constant), fused and unfused forms, numpy scalar semantics (1/0)
EXOTIC = [
    """def ex1(w, g, m, v, lr, wd, step, a=0.9, b=0.5, c=2.0):
    n = norm(g)
    r = rms(m) + 0.001
    mu = mean(g)
    m = interp(g, m, a)
    v = maximum(v, abs(g))
    t = clip(g / (n + 1e-12), b) * tanh(r)
    s = sign(m) * exp(-square(g)) + log(1 + abs(v))
    q = interp(n, g, b) + interp(g, mu, 0.3) + minimum(0.1, g) + maximum(g, r) - c / (1 + abs(g))
    q = q + 2 ** g - g ** 2 + abs(g) ** b + (1 + abs(g)) ** (abs(m) + 0.5)
    k = minimum(1 / (step - step), 1) - lr * wd / (1 + step)
    w = w * k - lr * (t + 0.01 * s + 0.001 * q) / sqrt(step)
    w = w - lr * row_normalize(m) * 0.01 - lr * col_normalize(v) * 0.01
    return w, m, v
""",
    """def ex2(w, g, m, lr, step, h=0.25):
    s = norm(m) / (1 + rms(g))
    d = clip(h, g) + clip(g, s) + clip(s, g) + interp(s, mean(g), h) * g
    e = interp(g, m, s) - interp(s, s * 2, g) + maximum(s, 0.5) * minimum(g, s)
    m = interp(d * e, m, 0.9)
    f = 1 - g
    z = 3 / (1 + g * g) - h * (g / (2 + abs(m))) + (-(g * h)) / 4
    w = w - lr * (m + 0.1 * f * z) + (lr * h) * (g * -0.5) / (1 + abs(e))
    w = w - s * lr * sign(g) - lr * s ** 2 * g - lr * g ** s - lr * 0.01 * step ** (-h) * g
    return w, m
""",
    """def ex3(w, g, m, v, lr):
    t = m
    m = v + g
    v = t * 0.5
    w = w - lr * m
    return w, m, v
""",
    """def ex4(w, g, m, v):
    t = m
    m = v
    v = t
    return w, m, v
""",
    """def ex5(w, g, m, v, wd):
    m = g
    v = g
    w = -g * wd
    return w, m, v
""",
    """def ex6(w, g, m, lr, beta=0.9):
    m = interp(m, 2 * (g * g), beta)
    u = interp(g / (1 + abs(m)), m, 1 - beta)
    w = interp(w, w - lr * u, 0.5)
    return w, m
""",
    # matrix primitives are the identity below 2-D: their result must not alias a buffer
    # that a later instruction of the plan reuses (regression: 1-D results were overwritten)
    """def ex7(w, g, m, lr):
    u = orthogonalize(interp(g, m, 0.5))
    t = 0 * g + 1
    r = row_normalize(t) + col_normalize(m)
    m = orthogonalize(m) + g
    w = w - lr * (u + 0.1 * r)
    return w, m
""",
]

SHAPES = [(6, 4), (5,), (3, 2, 2), ()]


class Problem:
    """A noisy diagonal quadratic: g_t = A * w + noise_t, deterministic per seed."""

    def __init__(self, steps: int, seed: int = 0, shapes=SHAPES):
        gen = torch.Generator().manual_seed(seed)
        self.shapes = shapes
        self.w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        self.A = [torch.rand(s, generator=gen, dtype=torch.float64) + 0.1 for s in shapes]
        self.noise = [[0.3 * torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
                      for _ in range(steps)]

    def grad(self, t: int, i: int, w: torch.Tensor) -> torch.Tensor:
        return (self.A[i] * w.double() + self.noise[t][i]).to(w.dtype)

    def params(self, dtype=torch.float64):
        return [w.clone().to(dtype).requires_grad_() for w in self.w0]


def run_reference(prog, prob, steps, lr=1e-2, wd=0.1, hyper=None, lr_of=None, has_grad=None):
    """The interpreter, one tensor at a time; ``has_grad(t, i)`` may skip a parameter."""
    ws = [w.clone() for w in prob.w0]
    states = [{} for _ in ws]
    counts = [0] * len(ws)
    for t in range(steps):
        lr_t = lr_of(t) if lr_of else lr
        for i in range(len(ws)):
            if has_grad and not has_grad(t, i):
                continue
            counts[i] += 1
            g = prob.grad(t, i, ws[i])
            ws[i], states[i] = run_rule(prog, ws[i], g, states[i], lr=lr_t, wd=wd, step=counts[i], hyper=hyper)
    return ws, states


def run_compiled(opt, params, prob, t0, t1, has_grad=None, scheduler=None):
    for t in range(t0, t1):
        for i, p in enumerate(params):
            p.grad = prob.grad(t, i, p.detach()) if (has_grad is None or has_grad(t, i)) else None
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach() for p in params]


def assert_close_all(got, want, rtol=1e-12, atol=1e-12):
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


def roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def load_module(path: Path):
    """Import the Python file at ``path`` (an exported optimizer module) under its stem's name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_export(src_or_prog, class_name, tmp_path, module_name=None):
    """``export_python``'s module for a rule, written under ``tmp_path`` and imported: (class, text)."""
    text = export_python(src_or_prog, class_name)
    path = Path(tmp_path) / f"{module_name or 'exported_' + class_name.lower()}.py"
    path.write_text(text)
    return getattr(load_module(path), class_name), text


RULE_SOURCES = {"adamw_own": ADAMW, "lion_own": LION, "muonish": MUONISH,
                **{f"exotic{i + 1}": s for i, s in enumerate(EXOTIC)}, **RULES}


_NAMES_T = ["w", "g", "m", "v"]
_NAMES_C = ["lr", "step", "h"]


@st.composite
def _exprs(draw, depth):
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(_NAMES_T + _NAMES_C + ["0.5", "2", "0.9", "1"]))
    kind = draw(st.integers(0, 9))
    a = draw(_exprs(depth - 1))
    if kind <= 3:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({a} {op} {draw(_exprs(depth - 1))})"
    if kind == 4:
        return f"(-{a})"
    if kind == 5:
        return f"interp({a}, {draw(_exprs(depth - 1))}, {draw(st.sampled_from(['h', '0.9', 'abs(g)', 'norm(m)']))})"
    if kind == 6:
        fn = draw(st.sampled_from(["norm", "rms", "mean"]))
        return f"{fn}({a})"
    if kind == 7:
        fn = draw(st.sampled_from(["maximum", "minimum", "clip"]))
        return f"{fn}({a}, {draw(_exprs(depth - 1))})"
    fn = draw(st.sampled_from(["sign", "abs", "tanh", "square", "sqrt"]))
    return f"{fn}({a})"


@st.composite
def programs(draw):
    """Random well-formed update rules (some refused by the checker: callers skip DSLError)."""
    lines = []
    for target in draw(st.lists(st.sampled_from(["t", "m", "v", "w"]), min_size=1, max_size=5)):
        lines.append(f"    {target} = {draw(_exprs(3))} * g" if target != "t" else f"    t = {draw(_exprs(3))}")
    lines.append("    w = w - lr * (m + 0.1 * v)")
    return "def r(w, g, m, v, lr, step, h=0.7):\n" + "\n".join(lines) + "\n    return w, m, v\n"
