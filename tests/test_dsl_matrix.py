"""The shaped language: state shapes, row/col reductions, shape scalars, matrix algebra, refresh,
roles and the group norm; the checker's refusals with line and column; the per-parameter path
(compiled and exported) against the reference interpreter; old rules unchanged."""
import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
import torch

import dsl
from dsl import DSLError, export_python, fingerprint, parse, run_rule, to_optimizer
from search.rules import mutate

F64 = torch.float64
DATA = Path(__file__).parent / "data" / "dsl_plans_before.json"

ADAFACTORISH = """\
def fact(w, g, r: row, c: col, lr, wd, step, b2=0.9, eps=1e-30):
    r = interp(row_mean(g * g + eps), r, b2)
    c = interp(col_mean(g * g + eps), c, b2)
    v = r * c / mean(r)
    w = w - lr * g / sqrt(v)
    return w, r, c
"""

SHAMPOOISH = """\
def sham(w, g, m, is_matrix, lr, wd, step, L: rowmat, R: colmat, PL: rowmat = eye, PR: colmat = eye, k=3):
    n = global_norm(g)
    g = g / maximum(n, 1)
    L = L + matmul(g, transpose(g))
    R = R + matmul(transpose(g), g)
    PL = refresh(k, inv_root(L, 4, 1e-6), PL)
    PR = refresh(k, inv_root(R, 4, 1e-6), PR)
    m = interp(g, m, 0.9)
    u = interp(m, matmul(matmul(PL, m), PR), is_matrix)
    w = w * (1 - lr * wd) - lr * u
    return w, m, L, R, PL, PR
"""


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rand(shape, gen):
    return torch.randn(shape, generator=gen, dtype=F64)


# -- syntax ---------------------------------------------------------------------------------------

def test_state_annotations_parse_and_print_canonically():
    p = parse("def f(w, g, a: tensor, r: row, c: col = 1, h=0.1):\n    w = w - h * g\n    return w, a, r, c\n")
    assert p.state_names == ("a", "r", "c")
    assert p.state_kinds == {"a": "tensor", "r": "row", "c": "col"}
    assert p.state_inits == {"a": 0.0, "r": 0.0, "c": 1.0}
    assert p.source().splitlines()[0] == "def f(w, g, a, r: row, c: col = 1, h=0.1):"  # 'a: tensor' is plain 'a'
    assert parse(p.source()) == p
    q = parse("def f(w, g, s: scalar = 1, L: rowmat = eye, z: tensor = w):\n    w = w - g\n    return w, s, L, z\n")
    assert q.state_inits == {"s": 1.0, "L": "eye", "z": "w"}
    assert parse(q.source()) == q


@pytest.mark.parametrize("src, line, col, fragment", [
    ("def f(w, g, r: rows):\n    w = w - g\n    return w, r\n", 1, 16, "did you mean 'row'?"),
    ("def f(w, g, r: row = eye):\n    w = w - g\n    return w, r\n", 1, 22, "eye is the initial value of a square"),
    ("def f(w, g, r: row = w):\n    w = w - g\n    return w, r\n", 1, 22, "w is the initial value of a tensor"),
    ("def f(w, g, lr):\n    w = w - row_mean(lr) * g\n    return w\n", 2, 13, "row or column reduction"),
    ("def f(w, g):\n    w = w - matmul(g, g)\n    return w\n", 2, 13, "inner dimensions differ"),
    ("def f(w, g):\n    w = w - g * inv_root(g, 2, 0)\n    return w\n", 2, 17, "square matrix"),
    ("def f(w, g, L: rowmat):\n    L = row_mean(g) * w\n    return w, L\n", 3, 5, "must be a rowmat"),
    ("def f(w, g, L: rowmat):\n    w = w - (L + g)\n    return w, L\n", 2, 14, "cannot combine a rowmat"),
    ("def f(w, g, lr):\n    w = w - lr * transpose(g)\n    return w\n", 2, 9, "cannot combine a tensor"),
    ("def f(w, g):\n    w = w - numel(3) * g\n    return w\n", 2, 13, "needs a tensor"),
    ("def f(w, g):\n    g = 2 * g\n    w = w - g / global_norm(g)\n    return w\n", 3, 17, "reassigned"),
    ("def f(w, g):\n    w = w - g / global_norm(g * 2)\n    return w\n", 2, 17, "takes the input g or w"),
    ("def f(w, g):\n    w = w - refresh(g, g, w)\n    return w\n", 2, 13, "period k must be a scalar"),
    ("def f(w, g):\n    w = w - is_matrix * g\n    return w\n", 2, 13, "add it to the signature"),
])
def test_wrong_uses_are_refused_with_line_and_column(src, line, col, fragment):
    with pytest.raises(DSLError) as ei:
        parse(src)
    assert (ei.value.line, ei.value.col) == (line, col), str(ei.value)
    assert fragment in str(ei.value)


def test_misspellings_name_line_column_and_suggestion():
    src = ("def f(w, g, m, lr, beta1=0.9, beta2=0.99):\n"
           "    m = interp(g, m, beta1)\n"
           "    u = m / (1 - beat2)\n"
           "    w = w - lr * u\n"
           "    return w, m\n")
    with pytest.raises(DSLError) as ei:
        parse(src)
    assert (ei.value.line, ei.value.col) == (3, 18)
    assert "did you mean 'beta2'?" in str(ei.value)
    with pytest.raises(DSLError) as ei:
        parse(src.replace("beat2", "beta2").replace("interp(", "intrep("))
    assert (ei.value.line, ei.value.col) == (2, 9)
    assert "unknown function 'intrep'" in str(ei.value) and "did you mean 'interp'?" in str(ei.value)


# -- semantics on the m x n view -----------------------------------------------------------------

SHAPE_PROBE = """\
def probe(w, g, lr):
    w = w - lr * (rows(g) * 1000 + cols(g) * 10 + numel(g) / 100) - 0 * g
    return w
"""


@pytest.mark.parametrize("shape, m, n", [((5, 4), 5, 4), ((3, 2, 2), 3, 4), ((7,), 7, 1), ((), 1, 1)])
def test_shape_scalars_follow_the_view(shape, m, n):
    w = torch.zeros(shape, dtype=F64)
    new, _ = run_rule(parse(SHAPE_PROBE), w, torch.ones(shape, dtype=F64), {}, lr=1.0)
    assert torch.allclose(new, torch.full(shape, -(m * 1000 + n * 10 + m * n / 100), dtype=F64))


def test_row_and_col_reductions_and_extremes():
    gen = _gen(1)
    g = _rand((3, 2, 2), gen)
    G = g.reshape(3, 4)
    src = ("def f(w, g, r: row, c: col, s: scalar):\n    r = row_mean(g) + row_sum(g)\n"
           "    c = col_mean(g) - col_sum(g)\n    s = max_of(g) - min_of(g)\n    w = w - 0 * g\n"
           "    return w, r, c, s\n")
    _, st = run_rule(parse(src), torch.zeros_like(g), g, {})
    assert torch.allclose(st["r"], G.mean(1, keepdim=True) + G.sum(1, keepdim=True))
    assert torch.allclose(st["c"], G.mean(0, keepdim=True) - G.sum(0, keepdim=True))
    assert st["s"].shape == () and torch.isclose(st["s"], G.max() - G.min())
    # a vector is n x 1: a row reduction is the vector itself, a column reduction its mean
    v = _rand((6,), gen)
    _, st = run_rule(parse(src), torch.zeros_like(v), v, {})
    assert torch.allclose(st["r"].flatten(), 2 * v) and torch.allclose(st["c"].flatten(), v.mean() - v.sum())


def test_factored_second_moment_is_exact_on_vectors_and_rank_one():
    """Adafactor's v = r c / mean(r) equals g^2 on a vector (n x 1) and on a rank-one g^2."""
    p = parse(ADAFACTORISH.replace("b2=0.9", "b2=0.0").replace("eps=1e-30", "eps=0"))
    gen = _gen(2)
    v = _rand((8,), gen)
    new, _ = run_rule(p, torch.zeros_like(v), v, {}, lr=1.0)
    assert torch.allclose(new, -v / v.abs())
    a, b = _rand((4, 1), gen), _rand((1, 5), gen)
    g = a * b
    new, _ = run_rule(p, torch.zeros_like(g), g, {}, lr=1.0)
    assert torch.allclose(new, -torch.sign(g))


def test_linear_algebra_primitives():
    gen = _gen(3)
    A = _rand((5, 3), gen)
    src = ("def f(w, g, L: rowmat, Q: rowmat, P: rowmat, T: rowmat):\n"
           "    L = matmul(g, transpose(g)) + 0.5 * refresh(1, L, L)\n"
           "    P = inv_root(L, 2, 1e-3)\n    Q = eigvecs(L)\n    T = qr_q(L)\n    w = w - 0 * g\n"
           "    return w, L, Q, P, T\n")
    _, st = run_rule(parse(src), torch.zeros_like(A), A, {})
    L = A @ A.T
    assert torch.allclose(st["L"], L)
    eye = torch.eye(5, dtype=F64)
    P = st["P"]  # (L + 1e-3 I)^(-1/2): P (L + eps I) P = I
    assert torch.allclose(P @ (L + 1e-3 * eye) @ P, eye, atol=1e-8)
    Q = st["Q"]
    lam = torch.diagonal(Q.T @ L @ Q)
    assert torch.allclose(Q.T @ Q, eye, atol=1e-10) and bool((lam[:-1] >= lam[1:] - 1e-9).all())
    T = st["T"]
    R = T.T @ L
    assert torch.allclose(T.T @ T, eye, atol=1e-10) and torch.allclose(R, R.triu(), atol=1e-8)
    assert bool((torch.diagonal(R) >= -1e-10).all())


def test_refresh_is_due_on_steps_1_k_plus_1_and_keeps_old_between():
    p = parse("def f(w, g, m, k=3):\n    m = refresh(k, g, m)\n    w = w - m\n    return w, m\n")
    w, st, seen = torch.zeros(2, dtype=F64), {}, []
    for t in range(1, 9):
        w, st = run_rule(p, w, torch.full((2,), float(t), dtype=F64), st, step=t)
        seen.append(float(st["m"][0]))
    assert seen == [1, 1, 1, 4, 4, 4, 7, 7]


def test_roles_default_by_dimension_and_follow_param_groups():
    src = "def f(w, g, is_matrix, is_embedding, is_head, is_vector):\n" \
          "    w = w - (is_matrix + 10 * is_embedding + 100 * is_head + 1000 * is_vector) + 0 * g\n    return w\n"
    Opt = to_optimizer(src)
    ps = [torch.zeros(3, 2, requires_grad=True), torch.zeros(4, requires_grad=True),
          torch.zeros(5, 2, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    opt = Opt([{"params": ps[:2]}, {"params": ps[2:3], "role": "embedding"}, {"params": ps[3:], "role": "head"}])
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert [float(p.detach().flatten()[0]) for p in ps] == [-1, -1000, -10, -100]
    with pytest.raises(ValueError, match="invalid role 'hidden'"):
        Opt([{"params": ps[:1], "role": "hidden"}])


def test_global_norm_is_over_the_group():
    """A rule clipping by the group's gradient norm matches torch's clip_grad_norm_ then SGD."""
    src = "def clipsgd(w, g, lr):\n    w = w - lr * g / maximum(global_norm(g), 1)\n    return w\n"
    gen = _gen(4)
    ps = [_rand(s, gen).requires_grad_() for s in [(3, 4), (5,), (2, 2, 2)]]
    ref = [p.detach().clone().requires_grad_() for p in ps]
    grads = [_rand(p.shape, gen) * 3 for p in ps]
    opt = to_optimizer(src)(ps, lr=0.1)
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    opt.step()
    for p, g in zip(ref, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    torch.optim.SGD(ref, lr=0.1).step()
    for a, b in zip(ps, ref):
        assert torch.allclose(a, b, atol=1e-12)


# -- the optimizer, the export and the state_dict -------------------------------------------------

def _train(Opt, steps, state=None, seed=5, **kw):
    gen = _gen(seed)
    ps = [_rand(s, gen).requires_grad_() for s in [(4, 3), (6,), (2, 3, 2)]]
    targets = [_rand(p.shape, gen) for p in ps]
    opt = Opt([{"params": ps[:2]}, {"params": ps[2:], "role": "vector"}], lr=0.05, weight_decay=0.01, **kw)
    if state is not None:
        with torch.no_grad():
            for p, w in zip(ps, state[0]):
                p.copy_(w)
        opt.load_state_dict(state[1])
    for _ in range(steps):
        opt.zero_grad()
        sum(((p - t) ** 2 * (1 + p ** 2)).sum() for p, t in zip(ps, targets)).backward()
        opt.step()
    return [p.detach().clone() for p in ps], opt


def _reference(src, steps, seed=5):
    """The same training with run_rule by hand (roles, group norms)."""
    prog = parse(src)
    gen = _gen(seed)
    ws = [_rand(s, gen) for s in [(4, 3), (6,), (2, 3, 2)]]
    targets = [_rand(w.shape, gen) for w in ws]
    roles = ["matrix", "vector", "vector"]
    states = [{} for _ in ws]
    for t in range(1, steps + 1):
        gs = []
        for w, tg in zip(ws, targets):
            x = w.clone().requires_grad_()
            ((x - tg) ** 2 * (1 + x ** 2)).sum().backward()
            gs.append(x.grad)
        groups = [[0, 1], [2]]
        for grp in groups:
            gn = math.sqrt(sum(float(gs[i].norm()) ** 2 for i in grp))
            for i in grp:
                ws[i], states[i] = run_rule(prog, ws[i], gs[i], states[i], lr=0.05, wd=0.01, step=t,
                                            role=roles[i], global_norms={"g": gn})
    return ws


@pytest.mark.parametrize("src", [ADAFACTORISH, SHAMPOOISH])
def test_compiled_and_exported_follow_the_interpreter_and_checkpoints_move(src, tmp_path):
    want = _reference(src, 8)
    got, opt = _train(to_optimizer(src), 8)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    path = tmp_path / "shaped_export.py"
    path.write_text(export_python(src, "Exported"))
    spec = importlib.util.spec_from_file_location("shaped_export", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    exp, _ = _train(mod.Exported, 8)
    for a, b in zip(exp, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # 5 steps, a state_dict round trip (through the exported class), 3 more == 8 steps
    mid, opt5 = _train(to_optimizer(src), 5)
    sd = opt5.state_dict()
    kinds = parse(src).state_kinds
    for st in sd["state"].values():
        for name, kind in kinds.items():
            assert st[name].shape == (() if kind == "scalar" else st[name].shape)
    resumed, _ = _train(mod.Exported, 3, state=(mid, sd))
    for a, b in zip(resumed, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_state_shapes_in_the_state_dict():
    src = ("def f(w, g, r: row, c: col, R: colmat, s: scalar = 1, L: rowmat = eye, z: tensor = w):\n"
           "    w = w - 0.1 * g\n    return w, r, c, R, s, L, z\n")
    p = torch.ones(4, 3, 2, requires_grad=True)
    opt = to_optimizer(src)([p])
    p.grad = torch.ones_like(p)
    opt.step()
    st = opt.state[p]
    assert {k: tuple(v.shape) for k, v in st.items() if k != "step"} == \
        {"r": (4, 1), "c": (1, 6), "R": (6, 6), "s": (), "L": (4, 4), "z": (4, 3, 2)}
    assert torch.equal(st["L"], torch.eye(4)) and float(st["s"]) == 1 and torch.equal(st["z"], torch.ones(4, 3, 2))


def test_compile_true_is_refused_for_shaped_rules_with_the_reason():
    with pytest.raises(DSLError, match="compile=True is not available.*row_mean"):
        to_optimizer(ADAFACTORISH, compile=True)


# -- what did not change -------------------------------------------------------------------------

def test_rules_without_shapes_compile_to_the_same_plans_and_fingerprints():
    """The library rules as they were before shapes: same plan text and fingerprint."""
    before = json.loads(DATA.read_text())
    checked = 0
    for name, rec in before.items():
        prog = parse(rec["source"])
        assert not dsl.extensions(prog)
        assert to_optimizer(prog).plan() == rec["plan"], name
        assert fingerprint(prog) == rec["fingerprint"], name
        checked += 1
    assert checked >= 13


def test_torch_conventions_class_names_betas_and_repr():
    assert [dsl.class_name(n) for n in ("adamw", "sgd_momentum", "lion", "clipped_rms_momentum", "soap")] == \
        ["AdamW", "SGDMomentum", "Lion", "ClippedRMSMomentum", "SOAP"]
    Opt = to_optimizer(dsl.get_rule("adamw"))
    assert Opt.__name__ == "AdamW"
    p = torch.zeros(3, requires_grad=True)
    opt = Opt([p], betas=(0.8, 0.95))
    assert (opt.param_groups[0]["beta1"], opt.param_groups[0]["beta2"]) == (0.8, 0.95)
    opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "betas": (0.5, 0.6)})
    assert (opt.param_groups[1]["beta1"], opt.param_groups[1]["beta2"]) == (0.5, 0.6)
    with pytest.raises(TypeError, match="either betas"):
        Opt([p], betas=(0.8, 0.95), beta1=0.9)
    with pytest.raises(TypeError, match="betas must be a pair"):
        Opt([p], betas=0.9)
    text = repr(opt)
    assert "rule: def adamw(w, g, m, v, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-08) (5 statements)" in text
    assert "interp(" not in text  # the whole source is not printed per group


# -- mutations that introduce the shaped primitives ------------------------------------------------

@pytest.mark.parametrize("op, needs", [("factor_moment", {"row_mean", "col_mean"}),
                                       ("orthogonalize_momentum", {"orthogonalize", "rows", "cols"}),
                                       ("precondition", {"matmul", "transpose", "inv_root", "refresh"})])
def test_structural_mutations_check_and_run(op, needs):
    made = 0
    for name in ("adamw", "sgd_momentum", "lion", "adam"):
        for seed in range(4):
            child = mutate(dsl.get_rule(name), op, random.Random(seed))
            if child is None:
                continue
            made += 1
            assert dsl.parse(child.source()) == child
            fns = {n.fn for s in child.body for n in dsl.walk(s.value) if isinstance(n, dsl.Call)}
            assert needs <= fns, child.source()
            assert dsl.check(child).program == child
            gen = _gen(seed)
            ps = [_rand(s, gen).requires_grad_() for s in [(4, 3), (5,), (2, 3, 2)]]
            opt = to_optimizer(child)(ps, lr=1e-2, weight_decay=0.01)
            for _ in range(3):
                opt.zero_grad()
                sum((p ** 2).sum() for p in ps).backward()
                opt.step()
            assert all(bool(torch.isfinite(p).all()) for p in ps), child.source()
    assert made >= 10


def test_simplify_and_check_keep_shapes_and_meaning():
    src = SHAMPOOISH.replace("    m = interp(g, m, 0.9)\n", "    t = 0 * L\n    m = interp(g, m, 0.9)\n")
    prog = parse(src)
    report = dsl.check(prog)
    assert report.kinds["L"] == "rowmat" and report.kinds["PR"] == "colmat" and report.kinds["t"] == "rowmat"
    assert [d.target for d in report.dead] == ["t"]
    simple = dsl.simplify(prog)
    assert "t" not in {s.target for s in simple.body}
    assert simple.state_kinds == prog.state_kinds and simple.state_inits == prog.state_inits
    assert fingerprint(simple) == fingerprint(prog)


def test_the_llm_reference_names_every_primitive_and_the_state_syntax():
    text = dsl.reference_text()
    for name in dsl.PRIMITIVES:
        assert f"{name}(" in text
    for phrase in ("r: row", "L: rowmat = eye", "is_matrix", "s: scalar = 1"):
        assert phrase in text


class _CountEigh(torch.overrides.TorchFunctionMode):
    """Counts calls of torch.linalg.eigh (the real function runs)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.linalg.eigh:
            self.n += 1
        return func(*args, **(kwargs or {}))


def test_refresh_computes_its_new_value_only_when_due():
    src = ("def f(w, g, lr, L: rowmat, P: rowmat = eye):\n    L = L + matmul(g, transpose(g))\n"
           "    P = refresh(3, inv_root(L, 4, 1e-6), P)\n    w = w - lr * matmul(P, g)\n    return w, L, P\n")
    p = torch.randn(4, 3, dtype=F64, requires_grad=True)
    opt = to_optimizer(src)([p], lr=0.01)
    counter = _CountEigh()
    with counter:
        for _ in range(7):
            p.grad = torch.ones_like(p)
            opt.step()
    assert counter.n == 3  # steps 1, 4 and 7


def test_per_element_says_when_a_rule_may_run_on_flattened_parameters():
    assert dsl.per_element(dsl.get_rule("adamw")) and dsl.per_element(dsl.get_rule("lion"))
    assert not dsl.per_element(dsl.get_rule("muon"))  # orthogonalize
    assert not dsl.per_element(parse("def f(w, g, is_matrix):\n    w = w - is_matrix * g\n    return w\n"))
    assert not dsl.per_element(parse(ADAFACTORISH))
    assert dsl.per_element(parse("def f(w, g, z: tensor = w):\n    z = interp(w, z, 0.9)\n    w = w - g\n"
                                 "    return w, z\n"))


def test_mutated_shaped_rules_agree_across_interpreter_compiled_and_exported(tmp_path):
    """Children of the structural mutations (and random edits of them): the compiled optimizer and
    the exported module follow the reference interpreter."""
    rng = random.Random(11)
    progs = []
    for name in ("adamw", "sgd_momentum", "lion"):
        for op in ("factor_moment", "orthogonalize_momentum", "precondition"):
            child = mutate(dsl.get_rule(name), op, rng)
            if child is not None:
                child = mutate(child, rng.choice(["insert", "replace_fn", "constant"]), rng) or child
                progs.append(child)
    assert len(progs) >= 6
    for k, prog in enumerate(progs):
        path = tmp_path / f"mut_{k}.py"
        path.write_text(export_python(prog, "Mut"))
        spec = importlib.util.spec_from_file_location(f"mut_{k}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        outs = []
        for Opt in (to_optimizer(prog), mod.Mut):
            gen = _gen(k)
            ps = [_rand(s, gen).requires_grad_() for s in [(4, 3), (5,)]]
            opt = Opt(ps, lr=1e-2, weight_decay=0.01)
            for t in range(3):
                for i, p in enumerate(ps):
                    p.grad = _rand(p.shape, _gen(100 * t + i))
                opt.step()
            outs.append([p.detach().clone() for p in ps])
        gen = _gen(k)
        ws, states = [_rand(s, gen) for s in [(4, 3), (5,)]], [{}, {}]
        for t in range(3):
            for i in range(2):
                ws[i], states[i] = run_rule(prog, ws[i], _rand(ws[i].shape, _gen(100 * t + i)), states[i],
                                            lr=1e-2, wd=0.01, step=t + 1)
        for got in outs:
            for a, b in zip(got, ws):
                assert torch.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True), prog.source()
