"""export_python: the standalone module imports with torch alone and follows to_optimizer's
trajectory; checkpoints move between the two classes."""
import ast
import importlib.util
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import dsl
from dsl import DSLError, parse
from dsl.compile import to_optimizer
from dsl.export import export_python
from dsl_cases import (
    ADAMW,
    EXOTIC,
    LION,
    MUONISH,
    RULE_SOURCES,
    Problem,
    assert_close_all,
    load_export,
    programs,
    roundtrip,
    run_compiled,
    run_reference,
)  # `duplicates` pairs this name list with test_compile.py's: both import the shared cases, deliberate

OPTFORGE_PACKAGES = ("dsl", "evaluators", "proxies", "search")


def _trajectory(Opt, prob, steps, **kw):
    params = prob.params()
    opt = Opt(params, lr=1e-2, weight_decay=0.1, **kw)
    return run_compiled(opt, params, prob, 0, steps), opt, params


@pytest.mark.parametrize("name", sorted(RULE_SOURCES))
def test_export_matches_compiled(name, tmp_path):
    src = RULE_SOURCES[name]
    Exported, text = load_export(src, "Exported", tmp_path, module_name=f"exp_{name}")
    assert Exported.__doc__.count(parse(src).source().splitlines()[1].strip()) == 1
    steps = 30 if name.startswith("exotic") else 100
    prob = Problem(steps, seed=21)
    want, opt_c, _ = _trajectory(to_optimizer(src), prob, steps)
    got, opt_e, params = _trajectory(Exported, prob, steps)
    assert_close_all(got, want, rtol=1e-12, atol=1e-12)
    # same state layout and group keys
    for p in params:
        assert set(opt_e.state[p]) == {"step", *parse(src).state_names}
    assert set(opt_e.param_groups[0]) == set(opt_c.param_groups[0])


def test_export_reads_like_the_rule(tmp_path):
    _, text = load_export(ADAMW, "AdamW", tmp_path)
    body = text[text.index("def update("):text.index("def _copy")]
    for line in parse(ADAMW).source().splitlines()[1:]:  # one line per DSL statement, verbatim
        assert "\n" + line + "\n" in body
    tree = ast.parse(text)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imports} <= {"torch", "math", "numbers"}  # torch and the standard library
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AdamW")
    assert ast.get_docstring(cls).count("m = interp(g, m, beta1)") == 1


@pytest.mark.parametrize("name", ["adamw_own", "lion_own", "muonish", "exotic1", "exotic2", "exotic3",
                                  *[n for n in RULE_SOURCES if not n.endswith(("_own", "ish")) and "exotic" not in n
                                    and not dsl.extensions(parse(RULE_SOURCES[n]))]])  # shaped: test_dsl_matrix
def test_update_function_and_allocating_path_match_reference(name, tmp_path):
    """The module's per-tensor update() (the rule as written) and foreach_update without
    scratch buffers (the path off CPU) both follow the interpreter."""
    src = RULE_SOURCES[name]
    prog = parse(src)
    text = export_python(src, "R")
    path = tmp_path / f"upd_{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"upd_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    steps = 12
    prob = Problem(steps, seed=26)
    want, _ = run_reference(prog, prob, steps, lr=1e-2, wd=0.1)
    scal = {"lr": 1e-2, "wd": 0.1}
    hyper = dict(prog.hyperparams)
    # per tensor
    ws = [w.clone() for w in prob.w0]
    st_ = [{s: torch.zeros_like(w) for s in prog.state_names} for w in ws]
    for t in range(steps):
        for i in range(len(ws)):
            kw = {n: v for n, v in {**scal, "step": t + 1, **hyper}.items() if n in prog.arg_names}
            out = mod.update(w=ws[i], g=prob.grad(t, i, ws[i]), **st_[i], **kw)
            out = out if isinstance(out, tuple) else (out,)
            ws[i] = out[0]
            st_[i] = dict(zip(prog.state_names, out[1:]))
    assert_close_all(ws, want)
    # foreach, allocating temporaries
    W = [w.clone() for w in prob.w0]
    S = [[torch.zeros_like(w) for w in W] for _ in prog.state_names]
    for t in range(steps):
        G = [prob.grad(t, i, w) for i, w in enumerate(W)]
        kw = {n: v for n, v in {**scal, "step": t + 1, **hyper}.items() if n in prog.arg_names}
        mod.foreach_update(W, G, *S, None, **kw)
    assert_close_all(W, want)


def test_export_imports_without_optforge(tmp_path):
    """In a fresh interpreter where importing any optforge package fails, the module works."""
    (tmp_path / "lion_export.py").write_text(export_python(LION, "Lion"))
    code = (
        "import sys\n"
        f"for name in {OPTFORGE_PACKAGES!r}:\n"
        "    sys.modules[name] = None  # any import of it now raises ImportError\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import torch, lion_export\n"
        "w = torch.nn.Parameter(torch.ones(3))\n"
        "opt = lion_export.Lion([w], lr=0.1)\n"
        "w.grad = torch.tensor([1.0, -1.0, 0.0])\n"
        "opt.step()\n"
        "print(w.detach().tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = [float(x) for x in out.stdout.strip().strip("[]").split(",")]
    assert got == pytest.approx([0.9, 1.1, 1.0], abs=1e-6)  # w - lr * sign(g)


@pytest.mark.parametrize("first_compiled", [True, False])
def test_state_dict_moves_between_compiled_and_exported(first_compiled, tmp_path):
    steps, half = 60, 25
    prob = Problem(steps, seed=22)
    Compiled = to_optimizer(ADAMW)
    Exported, _ = load_export(ADAMW, "AdamW", tmp_path, module_name=f"sd_{first_compiled}")
    First, Second = (Compiled, Exported) if first_compiled else (Exported, Compiled)
    want, _, _ = _trajectory(Compiled, prob, steps)
    params = prob.params()
    o1 = First(params, lr=1e-2, weight_decay=0.1)
    run_compiled(o1, params, prob, 0, half)
    params2 = [p.detach().clone().requires_grad_() for p in params]
    o2 = Second(params2)
    o2.load_state_dict(roundtrip(o1.state_dict()))
    assert o2.param_groups[0]["weight_decay"] == 0.1
    got = run_compiled(o2, params2, prob, half, steps)
    assert_close_all(got, want, rtol=1e-12, atol=1e-12)


def test_export_of_odd_literals_and_names(tmp_path):
    """Python raises on 1/0 and returns complex for (-8)**0.5; the export keeps DSL semantics
    (inf, nan), and rule names that clash with the module's constants are renamed."""
    src = """def odd(w, g, inf, nan, lr, step):
    c = minimum(1 / 0, 2 ** 0.5) + 10 ** 400 * 0 + 1e15 * 1e15 / 1e30
    d = (-8) ** 0.5
    inf = interp(g, inf, 0.5) * c
    nan = maximum(nan, abs(g)) + 0 * d
    w = w - lr * inf / (1 + nan) + step * 0
    return w, inf, nan
"""
    Exported, text = load_export(src, "Odd", tmp_path)
    assert "inf_" in text and "nan_" in text
    prob = Problem(5, seed=23)
    want, _, _ = _trajectory(to_optimizer(src), prob, 5)
    got, _, _ = _trajectory(Exported, prob, 5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert any(torch.isnan(b).any() for b in want)  # the nan from (-8) ** 0.5 reached w


def test_export_param_groups_and_scheduler(tmp_path):
    steps = 20
    prob = Problem(steps, seed=24, shapes=[(4, 3), (3,)])
    Exported, _ = load_export(MUONISH, "Muonish", tmp_path)

    def run(Opt):
        params = prob.params()
        opt = Opt([{"params": [params[0]]}, {"params": [params[1]], "momentum": 0.5, "lr": 0.02}],
                  lr=0.05, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        return run_compiled(opt, params, prob, 0, steps, scheduler=sched)

    assert_close_all(run(Exported), run(to_optimizer(MUONISH)), rtol=1e-12, atol=1e-12)


def test_export_refuses_bad_names():
    for bad in ("not a name", "RuleOptimizer", "check_value", "RANGES", "torch"):
        with pytest.raises(ValueError, match="class_name"):
            export_python(ADAMW, bad)
    with pytest.raises(ValueError, match="shadow"):
        export_python("def f(w, g, RULE=0.5):\n    w = w - RULE * g\n    return w\n", "F")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_export_low_precision(dtype, tmp_path):
    Exported, _ = load_export(EXOTIC[0], "Ex1", tmp_path, module_name=f"ex1_{dtype}".replace(".", "_"))
    prob = Problem(10, seed=25)
    params = prob.params(dtype)
    opt = Exported(params, lr=1e-2)
    got = run_compiled(opt, params, prob, 0, 10)
    p2 = prob.params(dtype)
    want = run_compiled(to_optimizer(EXOTIC[0])(p2, lr=1e-2), p2, prob, 0, 10)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(programs())
def test_random_programs_export_matches_compiled(tmp_path, src):
    """Every branch of the code generator (per-tensor scalars, lerp with tensor weights, c ** x,
    reductions, copies) against the compiled plan, on random programs."""
    try:
        prog = parse(src)
    except DSLError:
        return
    name = f"rnd_{abs(hash(src)) % 10**12}"
    Exported, _ = load_export(prog, "R", tmp_path, module_name=name)
    prob = Problem(3, seed=27, shapes=[(3, 2), (4,)])
    want, _, _ = _trajectory(to_optimizer(prog), prob, 3)
    got, _, _ = _trajectory(Exported, prob, 3)
    for a, b in zip(got, want):
        fin = torch.isfinite(b) & (b.abs() < 1e30)
        torch.testing.assert_close(a[fin], b[fin], rtol=1e-9, atol=1e-9)
        assert torch.equal(torch.isnan(a[~fin]), torch.isnan(b[~fin]))


def test_cli_export_writes_a_working_optimizer(tmp_path, capsys):
    """``optforge rule export FILE -o OUT.py``: the written module's class follows to_optimizer."""
    from search.cli import main
    rule = tmp_path / "found.py"
    rule.write_text(LION.replace("def lion(", "def found_rule("))
    out = tmp_path / "found_opt.py"
    assert main(["rule", "export", str(rule), "-o", str(out)]) == 0
    assert "class FoundRule" in capsys.readouterr().out + out.read_text()
    spec = importlib.util.spec_from_file_location("found_opt", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prob = Problem(40, seed=28)
    want, _, _ = _trajectory(to_optimizer(LION), prob, 40)
    got, _, _ = _trajectory(mod.FoundRule, prob, 40)
    assert_close_all(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["adamw_own", "lion_own", "exotic3", "muonish"])
def test_export_tiled_step_is_bit_identical(name, tmp_path):
    """The exported step's CPU tiling (elementwise rules only) changes nothing: same result as
    one foreach_apply over the whole lists."""
    src = RULE_SOURCES[name]
    Exported, text = load_export(src, "T", tmp_path, module_name=f"tile_{name}")
    module_globals = Exported.__init__.__globals__
    assert module_globals["ELEMENTWISE"] == (name != "muonish")
    prob = Problem(6, seed=29, shapes=[(6, 4), (5,), (3, 2, 2), (), (9, 7)])

    def run(tile):
        return _trajectory(type("T", (Exported,), {"_tile": tile}), prob, 6)

    want, _, _ = run(0)
    got, opt, _ = run(7)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert bool(opt.__dict__.get("_tile_bufs")) == (name != "muonish")


@pytest.mark.parametrize("name", ["adamw", "soap"])   # the multi-tensor template and the shaped one
def test_exported_class_takes_torch_betas(name, tmp_path):
    src = dsl.RULES[name]
    Exported, _ = load_export(src, "Exported", tmp_path, module_name=f"betas_{name}")
    prob = Problem(20, seed=3)
    want, _, _ = _trajectory(to_optimizer(src), prob, 20, betas=(0.8, 0.95))
    got, opt, _ = _trajectory(Exported, prob, 20, betas=(0.8, 0.95))
    assert (opt.param_groups[0]["beta1"], opt.param_groups[0]["beta2"]) == (0.8, 0.95)
    assert_close_all(got, want, rtol=1e-12, atol=1e-12)
    base, _, _ = _trajectory(Exported, prob, 20)
    assert any(not torch.equal(a, b) for a, b in zip(got, base))   # the betas were not ignored
