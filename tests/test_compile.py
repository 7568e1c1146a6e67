"""to_optimizer: compiled multi-tensor optimizers vs the reference interpreter and torch.optim.

Trajectories are compared in float64 on a few small tensors of assorted shapes (0-D to 3-D),
with gradients that depend on the parameters (a noisy diagonal quadratic), over a few
hundred steps. The compiled plan reorders constant factors (hoisting), so it agrees with
the interpreter to rounding (~1e-15 relative), not bit for bit; resuming from a state_dict
must be bit for bit.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import dsl
from dsl import DSLError, parse
from dsl.compile import to_optimizer
from dsl.foreach import compile_plan
from dsl.library import RULES
from dsl_cases import (
    ADAMW,
    EXOTIC,
    LION,
    MUONISH,
    RULE_SOURCES,
    Problem,
    assert_close_all,
    programs,
    roundtrip,
    run_compiled,
    run_reference,
)

# ---------------------------------------------------------------------------------------------
# equivalence with the reference interpreter
# ---------------------------------------------------------------------------------------------

def _without_scratch(Opt):
    """The class with temporaries allocated per step (the path non-CPU devices take)."""
    return type(Opt.__name__, (Opt,), {"N_SCRATCH": 0, "ELEMENTWISE": False})


@pytest.mark.parametrize("scratch", [True, False])
@pytest.mark.parametrize("name", sorted(RULE_SOURCES))
def test_matches_reference_float64(name, scratch):
    prog = parse(RULE_SOURCES[name])
    steps = 40 if name.startswith("exotic") else 120
    prob = Problem(steps, seed=1)
    want_w, want_state = run_reference(prog, prob, steps)
    params = prob.params()
    Opt = to_optimizer(prog) if scratch else _without_scratch(to_optimizer(prog))
    opt = Opt(params, lr=1e-2, weight_decay=0.1)
    got = run_compiled(opt, params, prob, 0, steps)
    assert_close_all(got, want_w)
    for i, p in enumerate(params):
        st_ = opt.state[p]
        assert float(st_["step"]) == steps
        for s in prog.state_names:
            torch.testing.assert_close(st_[s], want_state[i][s], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_library_is_covered():
    assert {"adamw", "lion", "muon", "sgd", "adam"} <= set(RULES)


def test_plan_is_fused_and_in_place_for_adamw():
    """AdamW compiles to the same 8 memory passes torch's foreach AdamW makes."""
    plan = compile_plan(parse(ADAMW)).describe().splitlines()
    ops = [line.split(" = ")[1].split("(")[0] for line in plan]
    assert ops == ["mul_s", "lerp", "mul_s", "addcmul", "div_s", "sqrt", "add_s", "addcdiv"], plan
    assert sum("[new" in line for line in plan) == 1  # one temporary (the denominator)
    assert not any(line.split(" = ")[1].startswith("copy") for line in plan)
    assert compile_plan(parse(ADAMW)).n_scratch == 1


def test_scratch_buffers_are_reused_and_not_saved():
    prob = Problem(4, seed=12)
    params = prob.params(torch.float32)
    opt = to_optimizer(ADAMW)(params, lr=1e-2)
    run_compiled(opt, params, prob, 0, 2)
    first = {id(p): [b.data_ptr() for b in opt._scratch[p]] for p in params}
    run_compiled(opt, params, prob, 2, 4)
    assert {id(p): [b.data_ptr() for b in opt._scratch[p]] for p in params} == first
    assert all(len(opt._scratch[p]) == 1 for p in params)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "m", "v"} and "_scratch" not in sd
    # 2-byte dtypes allocate their temporaries (measured faster than copying into scratch)
    half = prob.params(torch.bfloat16)
    opt = to_optimizer(ADAMW)(half, lr=1e-2)
    run_compiled(opt, half, prob, 0, 2)
    assert not opt.__dict__.get("_scratch")


def _with_tile(Opt, tile):
    return type(Opt.__name__, (Opt,), {"_tile": tile})


@pytest.mark.parametrize("name", ["adamw_own", "lion_own", "exotic3", "exotic6", "adabelief", "sgd", "muonish",
                                  "exotic1"])
def test_tiled_step_is_bit_identical_to_whole_buckets(name):
    """The CPU tiled step (elementwise rules: the plan runs on cache-sized tiles of flat
    pieces) computes exactly what the whole-bucket plan computes; rules with reductions or
    matrix primitives, and non-contiguous parameters, take the whole-bucket path."""
    src = RULE_SOURCES[name]
    steps = 6
    shapes = [(6, 4), (5,), (3, 2, 2), (), (9, 7)]
    prob = Problem(steps, seed=15, shapes=shapes)
    Opt = to_optimizer(src)
    assert compile_plan(parse(src)).elementwise == (name not in ("muonish", "exotic1"))

    def run(tile, strided=False):
        params = prob.params(torch.float32)
        if strided:  # a non-contiguous leaf parameter
            t = torch.empty_strided((9, 7), (1, 9)).copy_(params[4].detach())
            params[4] = t.requires_grad_()
        opt = _with_tile(Opt, tile)(params, lr=1e-2, weight_decay=0.1)
        run_compiled(opt, params, prob, 0, steps)
        return params, opt

    for tile, strided in ((7, False), (16, False), (5, True)):
        want, o_want = run(0, strided)  # (matrix products round differently on other layouts)
        got, o_got = run(tile, strided)
        for a, b in zip(got, want):
            assert torch.equal(a.detach(), b.detach()), (tile, strided)
        for a, b in zip(got, want):
            for k, v in o_want.state[b].items():
                assert torch.equal(o_got.state[a][k], v), k
        if compile_plan(parse(src)).elementwise and not strided:
            assert all(t.numel() == tile for t in o_got._tile_bufs[(torch.device("cpu"), torch.float32)])
            assert "_tile_bufs" not in o_got.state_dict()


# ---------------------------------------------------------------------------------------------
# against torch.optim.AdamW, with a state_dict round trip in the middle
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [True, False])
def test_adamw_matches_torch_with_resume(foreach):
    steps, half = 200, 90
    prob = Problem(steps, seed=2)
    kw = dict(lr=3e-2, weight_decay=0.05)
    ref_params = prob.params()
    ref = torch.optim.AdamW(ref_params, betas=(0.9, 0.999), eps=1e-8, foreach=foreach, **kw)
    want = run_compiled(ref, ref_params, prob, 0, steps)

    Opt = to_optimizer(ADAMW)
    params = prob.params()
    opt = Opt(params, **kw)
    run_compiled(opt, params, prob, 0, half)
    sd = roundtrip(opt.state_dict())
    saved_w = [p.detach().clone() for p in params]
    params2 = [w.clone().requires_grad_() for w in saved_w]
    opt2 = Opt(params2, lr=1.0)  # the loaded param_groups override this
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    got = run_compiled(opt2, params2, prob, half, steps)
    assert_close_all(got, want, rtol=1e-12, atol=1e-13)


def test_loads_torch_adamw_state_renamed():
    """The state format is torch's: AdamW's exp_avg/exp_avg_sq load as the DSL's m/v."""
    steps = 60
    prob = Problem(steps, seed=3)
    ref_params = prob.params()
    ref = torch.optim.AdamW(ref_params, lr=1e-2, weight_decay=0.1)
    run_compiled(ref, ref_params, prob, 0, 30)
    sd = roundtrip(ref.state_dict())
    for s in sd["state"].values():
        s["m"], s["v"] = s.pop("exp_avg"), s.pop("exp_avg_sq")
    params = [p.detach().clone().requires_grad_() for p in ref_params]
    opt = to_optimizer(ADAMW)(params)
    opt.load_state_dict(sd)
    want = run_compiled(ref, ref_params, prob, 30, steps)
    got = run_compiled(opt, params, prob, 30, steps)
    assert_close_all(got, want, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# resume: bit for bit
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [ADAMW, LION, MUONISH, EXOTIC[0]])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_resume_is_bit_identical(src, dtype):
    steps, half = 30, 13
    prob = Problem(steps, seed=4)
    Opt = to_optimizer(src)
    # float16 cannot hold eps=1e-8 (it rounds to 0, and 0/0 is nan: torch's AdamW does the same)
    kw = {"eps": 1e-4} if dtype == torch.float16 and "eps" in parse(src).hyperparams else {}
    p_full = prob.params(dtype)
    o_full = Opt(p_full, lr=1e-2, weight_decay=0.1, **kw)
    want = run_compiled(o_full, p_full, prob, 0, steps)

    p1 = prob.params(dtype)
    o1 = Opt(p1, lr=1e-2, weight_decay=0.1, **kw)
    run_compiled(o1, p1, prob, 0, half)
    sd = roundtrip(o1.state_dict())
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    o2 = Opt(p2)
    o2.load_state_dict(sd)
    got = run_compiled(o2, p2, prob, half, steps)
    for a, b in zip(got, want):
        assert torch.isfinite(b).all()
        assert torch.equal(a, b)
    for a, b in zip(p2, p_full):
        for k, v in o_full.state[b].items():
            assert torch.equal(o2.state[a][k], v), k


def test_resume_with_scheduler_and_param_groups_is_bit_identical():
    """Optimizer and LR scheduler checkpointed mid-schedule, two groups with their own
    hyperparameters: the resumed run continues exactly (weights, state, lr)."""
    steps, half = 24, 11
    prob = Problem(steps, seed=13)
    Opt = to_optimizer(ADAMW)

    def make(params):
        opt = Opt([{"params": params[:2]}, {"params": params[2:], "lr": 3e-2, "beta1": 0.8, "eps": 1e-6}],
                  lr=1e-2, weight_decay=0.1)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-4)

    p_full = prob.params(torch.float32)
    o_full, s_full = make(p_full)
    want = run_compiled(o_full, p_full, prob, 0, steps, scheduler=s_full)

    p1 = prob.params(torch.float32)
    o1, s1 = make(p1)
    run_compiled(o1, p1, prob, 0, half, scheduler=s1)
    ckpt = roundtrip({"opt": o1.state_dict(), "sched": s1.state_dict()})
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    o2, s2 = make(p2)
    o2.load_state_dict(ckpt["opt"])
    s2.load_state_dict(ckpt["sched"])
    assert [g["lr"] for g in o2.param_groups] == [g["lr"] for g in o1.param_groups]
    assert o2.param_groups[1]["beta1"] == 0.8 and o2.param_groups[1]["eps"] == 1e-6
    got = run_compiled(o2, p2, prob, half, steps, scheduler=s2)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert [g["lr"] for g in o2.param_groups] == [g["lr"] for g in o_full.param_groups]


def test_state_dict_is_torch_format():
    """torch.optim's layout: state keyed by parameter index, one buffer per DSL state variable
    (named as in the rule, the parameter's dtype and shape) plus a 0-dim float32 ``step``;
    lr, weight_decay and every hyperparameter in each param group; the rule's source and
    fingerprint in ``defaults`` (and so in the groups)."""
    prob = Problem(3, seed=14)
    params = prob.params(torch.float32)
    opt = to_optimizer(ADAMW)(params, lr=1e-2, weight_decay=0.1, beta2=0.99)
    run_compiled(opt, params, prob, 0, 3)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == list(range(len(params)))
    for i, p in enumerate(params):
        st_ = sd["state"][i]
        assert set(st_) == {"step", "m", "v"}
        assert st_["step"].dim() == 0 and st_["step"].dtype == torch.float32 and float(st_["step"]) == 3
        assert st_["step"].device.type == "cpu"
        for k in ("m", "v"):
            assert st_[k].shape == p.shape and st_[k].dtype == p.dtype
    (group,) = sd["param_groups"]
    assert group["params"] == list(range(len(params)))
    assert {k: group[k] for k in ("lr", "weight_decay", "beta1", "beta2", "eps")} == \
        dict(lr=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.99, eps=1e-8)
    assert parse(opt.defaults["rule"]) == parse(ADAMW) and group["rule"] == opt.defaults["rule"]
    assert opt.defaults["fingerprint"] == dsl.fingerprint(parse(ADAMW)) == group["fingerprint"]
    # the same layout torch's AdamW uses, up to the buffer names
    ref = torch.optim.AdamW(prob.params(torch.float32), lr=1e-2)
    ref_params = ref.param_groups[0]["params"]
    for p in ref_params:
        p.grad = torch.ones_like(p)
    ref.step()
    ref_st = ref.state_dict()["state"][0]
    assert {k: (v.dtype, v.shape) for k, v in ref_st.items() if k == "step"} == \
        {k: (v.dtype, v.shape) for k, v in sd["state"][0].items() if k == "step"}


# ---------------------------------------------------------------------------------------------
# optimizer interface
# ---------------------------------------------------------------------------------------------

def test_constructor_defaults_and_errors():
    Opt = to_optimizer(ADAMW)
    p = torch.zeros(3, requires_grad=True)
    opt = Opt([p], lr=0.1, beta2=0.95)
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["beta1"], g["beta2"], g["eps"]) == (0.1, 0.0, 0.9, 0.95, 1e-8)
    assert opt.defaults["rule"] == parse(ADAMW).source()
    assert parse(opt.defaults["rule"]) == parse(ADAMW)
    if hasattr(dsl, "fingerprint"):
        assert opt.defaults["fingerprint"] == dsl.fingerprint(parse(ADAMW))
    with pytest.raises(TypeError, match=r"'gamma'.*valid arguments: params, lr, weight_decay, beta1, beta2, eps, "
                                        r"betas"):
        Opt([p], gamma=0.5)
    g2 = Opt([p], betas=(0.8, 0.99)).param_groups[0]  # torch.optim's spelling of the beta1/beta2 pair
    assert (g2["beta1"], g2["beta2"]) == (0.8, 0.99)
    with pytest.raises(TypeError, match="'beta1' must be a real number"):
        Opt([p], beta1="0.9")
    with pytest.raises(ValueError, match="invalid lr"):
        Opt([p], lr=-1.0)
    with pytest.raises(TypeError, match="floating-point tensors"):
        Opt([torch.zeros(2, dtype=torch.int64)])
    with pytest.raises(DSLError, match="clash"):
        to_optimizer("def f(w, g, params=1.0):\n    w = w - params * g\n    return w\n")
    with pytest.raises(DSLError):
        to_optimizer("def f(w, g):\n    import os\n    return w\n")
    with pytest.raises(TypeError, match="Program or DSL source"):
        to_optimizer(42)
    assert to_optimizer(ADAMW) is Opt  # compiled once per rule
    assert "beta1=0.9" in str(__import__("inspect").signature(Opt))


def test_param_groups_override_hyperparameters():
    steps = 50
    prob = Problem(steps, seed=5, shapes=[(4, 3), (3,)])
    prog = parse(LION)
    ws0 = prob.params()
    opt = to_optimizer(LION)([{"params": [ws0[0]]}, {"params": [ws0[1]], "lr": 3e-3, "beta1": 0.5}],
                             lr=1e-2, weight_decay=0.1)
    got = run_compiled(opt, ws0, prob, 0, steps)
    ref_a, _ = run_reference(prog, prob, steps, lr=1e-2, wd=0.1)
    ref_b, _ = run_reference(prog, prob, steps, lr=3e-3, wd=0.1, hyper={"beta1": 0.5})
    assert_close_all([got[0]], [ref_a[0]])
    assert_close_all([got[1]], [ref_b[1]])
    assert not torch.allclose(ref_a[1], ref_b[1])  # the override mattered


@pytest.mark.parametrize("make_sched", [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=25, eta_min=1e-4),
])
def test_lr_schedulers(make_sched):
    steps = 40
    prob = Problem(steps, seed=6)
    params = prob.params()
    opt = to_optimizer(ADAMW)(params, lr=5e-2, weight_decay=0.1)
    sched = make_sched(opt)
    lrs = []
    for t in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        run_compiled(opt, params, prob, t, t + 1, scheduler=sched)
    assert len(set(lrs)) > 3
    want, _ = run_reference(parse(ADAMW), prob, steps, wd=0.1, lr_of=lambda t: lrs[t])
    assert_close_all([p.detach() for p in params], want)


def test_params_without_grad_are_skipped_and_steps_are_per_parameter():
    steps = 30
    prob = Problem(steps, seed=7)
    has_grad = lambda t, i: not (i == 1 and t % 3 == 0) and not (i == 2 and t < 5)  # noqa: E731
    params = prob.params()
    opt = to_optimizer(ADAMW)(params, lr=1e-2, weight_decay=0.1)
    run_compiled(opt, params, prob, 0, 1, has_grad=lambda t, i: i != 2)
    assert len(opt.state[params[2]]) == 0  # never had a gradient: no state yet
    got = run_compiled(opt, params, prob, 1, steps, has_grad=has_grad)
    want, _ = run_reference(parse(ADAMW), prob, steps,
                            has_grad=lambda t, i: i != 2 if t == 0 else has_grad(t, i))
    assert_close_all(got, want)
    assert float(opt.state[params[1]]["step"]) == steps - len([t for t in range(1, steps) if t % 3 == 0])


def test_closure_loss_and_zero_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = to_optimizer(LION)([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 5.0
    torch.testing.assert_close(w.detach(), torch.tensor([0.9, -1.9]))
    opt.zero_grad()
    assert w.grad is None


def test_sparse_gradient_is_refused():
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = to_optimizer(ADAMW)(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_load_state_dict_of_another_rule_is_refused():
    p = torch.ones(3, requires_grad=True)
    lion = to_optimizer(LION)([p])
    p.grad = torch.ones(3)
    lion.step()
    adamw = to_optimizer(ADAMW)([torch.ones(3, requires_grad=True)])
    with pytest.raises(ValueError, match="lacks v"):
        adamw.load_state_dict(lion.state_dict())
    assert len(adamw.state) == 0  # nothing changed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_params(dtype):
    """State lives in the parameter's dtype (like torch AdamW) and the update tracks float64."""
    steps = 20
    prob = Problem(steps, seed=8)
    for src in (ADAMW, LION, EXOTIC[0]):
        params = prob.params(dtype)
        opt = to_optimizer(src)(params, lr=1e-2, weight_decay=0.1)
        got = run_compiled(opt, params, prob, 0, steps)
        want, _ = run_reference(parse(src), prob, steps)
        for p, a, b in zip(params, got, want):
            assert a.dtype == dtype
            assert all(v.dtype == dtype for k, v in opt.state[p].items() if k != "step")
            assert opt.state[p]["step"].dtype == torch.float32
            tol = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}[dtype]
            torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_mixed_dtypes_in_one_group():
    prob = Problem(5, seed=9)
    params = [w.clone().to(dt).requires_grad_() for w, dt in
              zip(prob.w0, [torch.float32, torch.float64, torch.bfloat16, torch.float64])]
    opt = to_optimizer(ADAMW)(params, lr=1e-2)
    got = run_compiled(opt, params, prob, 0, 5)
    want, _ = run_reference(parse(ADAMW), prob, 5, wd=0.0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=3e-2, atol=3e-2)


# ---------------------------------------------------------------------------------------------
# random programs: the compiled plan computes what the interpreter computes
# ---------------------------------------------------------------------------------------------

@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(programs())
def test_random_programs_match_reference(src):
    try:
        prog = parse(src)
    except DSLError:
        return  # e.g. a scalar-valued state: refused by the parser, nothing to compile
    prob = Problem(3, seed=10, shapes=[(3, 2), (4,)])
    want, want_state = run_reference(prog, prob, 3, lr=0.1)
    params = prob.params()
    opt = to_optimizer(prog)(params, lr=0.1)
    got = run_compiled(opt, params, prob, 0, 3)
    for a, b in zip(got, want):
        fin = torch.isfinite(b) & (b.abs() < 1e30)
        # where the interpreter's value is finite and moderate, the plan's must agree closely
        torch.testing.assert_close(a[fin], b[fin], rtol=1e-9, atol=1e-9)
        assert torch.equal(torch.isnan(a[~fin]), torch.isnan(b[~fin]))


# ---------------------------------------------------------------------------------------------
# torch.compile (finalists only): slow
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("src", [ADAMW, MUONISH])
def test_torch_compile_path_matches(src):
    """compile=True: same trajectory, under an LR schedule, without recompiling per step."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    steps = 8
    prob = Problem(steps, seed=11, shapes=[(4, 3), (3,)])
    try:
        Opt = to_optimizer(src, compile=True)
    except RuntimeError as e:  # no C++ compiler: the error says so
        assert "compiler" in str(e)
        pytest.skip(str(e))
    torch._dynamo.reset()
    counters.clear()
    params = prob.params()
    opt = Opt(params, lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for t in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        run_compiled(opt, params, prob, t, t + 1, scheduler=sched)
    want, _ = run_reference(parse(src), prob, steps, wd=0.1, lr_of=lambda t: lrs[t])
    assert_close_all([p.detach() for p in params], want, rtol=1e-10, atol=1e-12)
    assert counters["stats"]["unique_graphs"] <= 2  # lr and step changes did not recompile


# ---------------------------------------------------------------------------------------------
# off CPU: no GPU here, so the "meta" device (shapes only) runs the non-CPU branches
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(RULE_SOURCES))
def test_non_cpu_device_path_keeps_everything_on_the_device(name):
    """Nothing in the step creates a CPU tensor that meets the parameters (which would fail
    on a GPU): every rule steps on meta tensors, state buffers on the parameters' device,
    ``step`` a CPU scalar as in torch.optim (non-capturable)."""
    prog = parse(RULE_SOURCES[name])
    params = [torch.empty(s, device="meta", requires_grad=True) for s in [(4, 3), (5,), (2, 3, 2)]]
    for p in params:
        p.grad = torch.empty_like(p)
    opt = to_optimizer(prog)(params, lr=0.1, weight_decay=0.1)
    opt.step()
    opt.step()
    for p in params:
        assert float(opt.state[p]["step"]) == 2 and opt.state[p]["step"].device.type == "cpu"
        assert all(opt.state[p][s].device.type == "meta" for s in prog.state_names)
    assert not opt.__dict__.get("_scratch") and not opt.__dict__.get("_tile_bufs")
