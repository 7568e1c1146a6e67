"""Generated optimizers behave like torch.optim's: the generic checks PyTorch runs on its own
optimizers, written here for every library rule, as compiled (``dsl.to_optimizer``) and as
exported (``dsl.export_python``) classes.

Checked per (rule, class): state_dict determinism and an exact round trip through
torch.save/torch.load; a Python-number ``step`` loads and steps; step() without gradients
changes nothing; param groups with their own lr / weight_decay; LR schedulers (and a tensor
lr); step and state_dict hooks; deepcopy; argument errors (types, ranges, flags);
zero_grad(set_to_none=False); maximize; foreach=False; complex parameters (the real view);
sparse gradients refused. Numbers: against torch.optim for the rules it has, against a
hand-written reference for Lion, in float32 and float64 (bfloat16 where torch has the feature).
"""
import copy
import math

import pytest
import torch

import dsl
from dsl.library import RANGES
from dsl_cases import load_export, roundtrip

RULES = dsl.list_rules()
KINDS = ("compiled", "exported")
SHAPES = [(3, 4), (5,), ()]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
_EXPORTED: dict[str, type] = {}


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exported_optimizers")


def make_class(rule: str, kind: str, export_dir) -> type:
    if kind == "compiled":
        return dsl.to_optimizer(dsl.get_rule(rule))
    if rule not in _EXPORTED:
        class_name = "".join(p.capitalize() for p in rule.split("_"))
        _EXPORTED[rule] = load_export(dsl.get_rule(rule), class_name, export_dir, f"conf_{rule}")[0]
    return _EXPORTED[rule]


@pytest.fixture(params=[(r, k) for r in RULES for k in KINDS], ids=lambda rk: f"{rk[0]}-{rk[1]}")
def Opt(request, export_dir):
    return make_class(*request.param, export_dir)


def make_params(seed=0, dtype=torch.float64, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def clone_params(params):
    return [p.detach().clone().requires_grad_() for p in params]


def set_grads(params, t, seed=0):
    """Gradients that depend on the step and on the parameter (a noisy quadratic)."""
    gen = torch.Generator().manual_seed(1000 * seed + t)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.is_complex():
            noise = torch.complex(noise, torch.randn(p.shape, generator=gen, dtype=torch.float64))
        p.grad = (p.detach() * (1 + i) + 0.1 * noise.to(p.dtype)).to(p.dtype)


def run(opt, params, t0, t1, seed=0, scheduler=None):
    for t in range(t0, t1):
        set_grads(params, t, seed)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in params]


def assert_same_state_dict(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        sa, sb = a["state"][k], b["state"][k]
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.is_tensor(sa[name]) and torch.is_tensor(sb[name])
            assert sa[name].dtype == sb[name].dtype, name
            assert torch.equal(sa[name], sb[name]), name


# ---------------------------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trip_is_exact(Opt, dtype):
    """Saved, loaded into a fresh optimizer, saved again: the same dict (no key added to the
    groups), and the two continue identically."""
    params = make_params(dtype=dtype)
    opt = Opt(params, lr=1e-2, weight_decay=0.01)
    run(opt, params, 0, 3)
    sd = opt.state_dict()
    params2 = clone_params(params)
    opt2 = Opt(params2, lr=0.5)
    opt2.load_state_dict(roundtrip(sd))
    assert_same_state_dict(opt2.state_dict(), sd)
    assert_same_state_dict(roundtrip(opt2.state_dict()), roundtrip(sd))
    for a, b in zip(run(opt, params, 3, 6), run(opt2, params2, 3, 6)):
        assert torch.equal(a, b)


def test_state_dict_is_deterministic(Opt):
    def once():
        params = make_params(seed=3)
        opt = Opt(params, lr=1e-2)
        run(opt, params, 0, 4, seed=3)
        return opt

    o1, o2 = once(), once()
    assert_same_state_dict(o1.state_dict(), o2.state_dict())
    assert_same_state_dict(o1.state_dict(), o1.state_dict())


@pytest.mark.parametrize("number", [int, float])
def test_load_state_dict_with_a_number_step(Opt, number):
    """Older torch versions and other libraries save ``step`` as a Python number."""
    params = make_params()
    opt = Opt(params, lr=1e-2)
    run(opt, params, 0, 3)
    sd = roundtrip(opt.state_dict())
    for st in sd["state"].values():
        st["step"] = number(st["step"].item())
    params2 = clone_params(params)
    opt2 = Opt(params2, lr=1e-2)
    opt2.load_state_dict(sd)
    want = run(opt, params, 3, 5)
    got = run(opt2, params2, 3, 5)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    for p, q in zip(params2, params):
        step = opt2.state[p]["step"]
        assert torch.is_tensor(step) and step.dtype == opt.state[q]["step"].dtype and float(step) == 5


def test_load_state_dict_without_the_flags_adds_only_what_is_missing(Opt):
    """A checkpoint from before the flags were param-group keys (or from another library):
    the groups gain exactly the missing keys, with their defaults, and nothing else."""
    params = make_params()
    opt = Opt(params, lr=1e-2)
    run(opt, params, 0, 2)
    sd = roundtrip(opt.state_dict())
    for g in sd["param_groups"]:
        for key in ("maximize", "foreach", "capturable", "differentiable", "fused"):
            g.pop(key)
        g["custom_key"] = "kept"
    opt2 = Opt(clone_params(params), lr=0.5)
    opt2.load_state_dict(sd)
    (g,) = opt2.state_dict()["param_groups"]
    assert g["custom_key"] == "kept" and g["lr"] == 1e-2
    assert set(g) == set(opt.state_dict()["param_groups"][0]) | {"custom_key"}
    assert (g["maximize"], g["foreach"], g["fused"]) == (False, None, None)


OTHER = "def other(w, g, zz, lr):\n    zz = zz + g\n    w = w - lr * zz\n    return w, zz\n"


def test_load_refuses_state_of_another_rule(Opt):
    """A state without this rule's buffers is refused before anything changes (a rule with no
    buffers needs only ``step`` and loads it)."""
    params = make_params()
    src = dsl.to_optimizer(OTHER)(params, lr=1e-2)
    run(src, params, 0, 1)
    opt = Opt(clone_params(params), lr=1e-2)
    if not Opt.STATE:
        opt.load_state_dict(src.state_dict())
        assert all(float(st["step"]) == 1 for st in opt.state.values())
        return
    with pytest.raises(ValueError, match="lacks"):
        opt.load_state_dict(src.state_dict())
    assert not opt.state and opt.param_groups[0]["rule"] == Opt.RULE


# ---------------------------------------------------------------------------------------------
# stepping
# ---------------------------------------------------------------------------------------------

def test_step_without_gradients_is_a_no_op(Opt):
    params = make_params()
    before = [p.detach().clone() for p in params]
    opt = Opt(params, lr=0.1, weight_decay=0.1)
    opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert not opt.state
    # one parameter with a gradient: only it moves, only it gets state
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    if torch.equal(params[0].detach(), before[0]):
        opt.step()  # a rule may skip its first step (SOAP does): it moves on the second
    assert not torch.equal(params[0].detach(), before[0])
    assert all(torch.equal(p.detach(), b) for p, b in zip(params[1:], before[1:]))
    assert list(opt.state) == [params[0]]


def test_param_groups_with_their_own_lr_and_weight_decay(Opt):
    """Two groups in one optimizer step exactly like two optimizers, one per group."""
    params = make_params(seed=5)
    opt = Opt([{"params": params[:2], "lr": 3e-2, "weight_decay": 0.1},
               {"params": params[2:], "weight_decay": 0.0}], lr=1e-2)
    assert [g["lr"] for g in opt.param_groups] == [3e-2, 1e-2]
    ref = clone_params(params)
    o_a = Opt(ref[:2], lr=3e-2, weight_decay=0.1)
    o_b = Opt(ref[2:], lr=1e-2)
    got = run(opt, params, 0, 5, seed=5)
    for t in range(5):
        set_grads(ref, t, seed=5)
        o_a.step()
        o_b.step()
    for a, b in zip(got, ref):
        assert torch.equal(a, b.detach())
    # lr = 0 leaves a group where it is (every library rule scales its step by lr)
    frozen = make_params(seed=6)
    before = [p.detach().clone() for p in frozen]
    opt = Opt([{"params": frozen[:1], "lr": 0.0, "weight_decay": 0.0}, {"params": frozen[1:]}], lr=1e-2)
    run(opt, frozen, 0, 3, seed=6)
    assert torch.equal(frozen[0].detach(), before[0])
    assert not torch.equal(frozen[1].detach(), before[1])


@pytest.mark.parametrize("make_sched", [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=6, cycle_momentum=False),
], ids=["steplr", "onecycle"])
def test_lr_scheduler_drives_the_lr(Opt, make_sched):
    """A scheduler's lr values are the ones the step uses (same as setting them by hand)."""
    params = make_params(seed=7)
    opt = Opt(params, lr=1e-2)
    sched = make_sched(opt)
    lrs = []
    for t in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        set_grads(params, t, 7)
        opt.step()
        sched.step()
    ref = clone_params(make_params(seed=7))
    o_ref = Opt(ref, lr=1e-2)
    for t, lr in enumerate(lrs):
        o_ref.param_groups[0]["lr"] = lr
        set_grads(ref, t, 7)
        o_ref.step()
    assert len(set(lrs)) > 1
    for a, b in zip(params, ref):
        assert torch.equal(a.detach(), b.detach())


def test_tensor_lr_is_the_same_as_a_float(Opt):
    pa, pb = make_params(seed=8), make_params(seed=8)
    oa = Opt(pa, lr=torch.tensor(0.01, dtype=torch.float64))
    ob = Opt(pb, lr=0.01)
    for a, b in zip(run(oa, pa, 0, 3, 8), run(ob, pb, 0, 3, 8)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"Tensor lr must be 1-element"):
        Opt(make_params(), lr=torch.tensor([0.1, 0.2]))


def test_zero_grad(Opt):
    params = make_params()
    opt = Opt(params, lr=1e-2)
    set_grads(params, 0)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_closure_returns_the_loss(Opt):
    params = make_params()
    opt = Opt(params, lr=1e-2)

    def closure():
        opt.zero_grad()
        loss = sum((p * p).sum() for p in params)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0 and params[0].grad is not None


# ---------------------------------------------------------------------------------------------
# hooks and copies
# ---------------------------------------------------------------------------------------------

def test_hooks(Opt):
    params = make_params()
    opt = Opt(params, lr=1e-2)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o is opt)))
    h2 = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o is opt)))
    run(opt, params, 0, 2)
    assert calls == [("pre", True), ("post", True)] * 2
    h1.remove()
    h2.remove()
    run(opt, params, 2, 3)
    assert len(calls) == 4

    def post(o, sd):
        sd["extra"] = "hooked"
        return sd
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd_pre"))
    opt.register_state_dict_post_hook(post)
    sd = opt.state_dict()
    assert sd["extra"] == "hooked" and calls[-1] == "sd_pre"
    loaded = []
    opt2 = Opt(clone_params(params), lr=1e-2)

    def load_pre(o, sd_):
        sd_ = dict(sd_)
        sd_.pop("extra")
        loaded.append("pre")
        return sd_
    opt2.register_load_state_dict_pre_hook(load_pre)
    opt2.register_load_state_dict_post_hook(lambda o: loaded.append("post"))
    opt2.load_state_dict(sd)
    assert loaded == ["pre", "post"]
    assert float(opt2.state[opt2.param_groups[0]["params"][0]]["step"]) == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deepcopy(Opt, dtype):
    params = make_params(seed=9, dtype=dtype)
    opt = Opt(params, lr=1e-2, weight_decay=0.01)
    run(opt, params, 0, 3, 9)
    twin = copy.deepcopy(opt)
    assert twin is not opt and type(twin) is type(opt)
    assert_same_state_dict(twin.state_dict(), opt.state_dict())
    twin_params = twin.param_groups[0]["params"]
    assert all(a is not b for a, b in zip(twin_params, params))
    for a, b in zip(run(opt, params, 3, 6, 9), run(twin, twin_params, 3, 6, 9)):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"lr": -1e-3}, r"invalid lr -0\.001: must be in \[0, inf\)"),
    ({"lr": math.nan}, "invalid lr nan"),
    ({"lr": math.inf}, r"invalid lr inf: must be in \[0, inf\)"),
    ({"weight_decay": -0.1}, r"invalid weight_decay -0\.1: must be in \[0, inf\)"),
    ({"weight_decay": math.nan}, "invalid weight_decay"),
    ({"fused": True}, "fused=True is not supported"),
    ({"capturable": True}, "capturable=True is not supported"),
    ({"differentiable": True}, "differentiable=True is not supported"),
])
def test_bad_arguments_are_value_errors(Opt, kw, match):
    with pytest.raises(ValueError, match=match):
        Opt(make_params(), **kw)


def test_add_param_group_checks_and_fills_in_defaults(Opt):
    params = make_params()
    opt = Opt(params[:1], lr=0.1, weight_decay=0.01)
    for bad, match in (({"lr": -1.0}, "invalid lr"), ({"weight_decay": math.inf}, "invalid weight_decay"),
                       ({"fused": True}, "fused=True"), ({"lr": torch.tensor([1.0, 2.0])}, "1-element")):
        with pytest.raises(ValueError, match=match):
            opt.add_param_group({"params": params[1:2], **bad})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": params[1:], "lr": 0.5})
    first, new = opt.param_groups
    assert new["lr"] == 0.5 and new["weight_decay"] == 0.01 and set(new) == set(first)
    assert_same_state_dict(roundtrip(opt.state_dict()), opt.state_dict())


def test_bad_argument_types(Opt):
    with pytest.raises(TypeError, match="'lr' must be a real number"):
        Opt(make_params(), lr="0.1")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Opt(make_params(), zeta=(0.9, 0.99))
    with pytest.raises(TypeError, match="'foreach' must be None, True or False"):
        Opt(make_params(), foreach="yes")
    with pytest.raises(TypeError, match="floating-point"):
        Opt([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match="empty parameter list"):
        Opt([])


def _outside(text: str) -> list[float]:
    """Values just outside an interval like '[0, 1)' (including the open end itself)."""
    lo_s, hi_s = (x.strip() for x in text[1:-1].split(","))
    out = [math.nan]
    if lo_s != "-inf":
        lo = float(lo_s)
        out.append(lo if text[0] == "(" else lo - 1e-3)
    if hi_s != "inf":
        hi = float(hi_s)
        out.append(hi if text[-1] == ")" else hi + 1e-3)
    else:
        out.append(math.inf if text[-1] == ")" else None)
    return [v for v in out if v is not None]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", [r for r in RULES if RANGES[r]])
def test_declared_ranges_are_enforced(rule, kind, export_dir):
    """Every declared range refuses the values just outside it, at construction and in
    add_param_group (which then leaves the optimizer unchanged), naming the argument."""
    Opt = make_class(rule, kind, export_dir)
    for h, text in RANGES[rule].items():
        for bad in _outside(text):
            with pytest.raises(ValueError, match=rf"invalid {h} "):
                Opt(make_params(), **{h: bad})
            opt = Opt(make_params()[:1])
            with pytest.raises(ValueError, match=rf"invalid {h} "):
                opt.add_param_group({"params": make_params(seed=1)[:1], h: bad})
            assert len(opt.param_groups) == 1
        opt = Opt(make_params(), **{h: Opt.HYPERPARAMETERS[h]})  # the default is inside
        assert opt.param_groups[0][h] == Opt.HYPERPARAMETERS[h]


@pytest.mark.parametrize("kind", KINDS)
def test_adam_beta1_one_and_negative_momentum_are_refused(kind, export_dir):
    """The cases torch refuses that used to be accepted (beta1 = 1 made NaN parameters)."""
    with pytest.raises(ValueError, match=r"invalid beta1 1\.0: must be in \[0, 1\)"):
        make_class("adam", kind, export_dir)(make_params(), beta1=1.0)
    with pytest.raises(ValueError, match="invalid momentum -0.5"):
        make_class("sgd_momentum", kind, export_dir)(make_params(), momentum=-0.5)
    with pytest.raises(ValueError, match="invalid lr_decay -0.1"):
        make_class("adagrad", kind, export_dir)(make_params(), lr_decay=-0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_discovered_rules_get_derived_ranges(kind, export_dir, tmp_path):
    """A rule outside the library: interp's weight in [0, 1], sqrt's argument >= 0, an eps
    next to sqrt in a denominator >= 0; a range the rule's own default breaks is not applied."""
    src = """def found(w, g, m, lr, wd, b=0.8, e=1e-6, s=4.0, x=1.5):
    m = interp(g, m, b)
    y = interp(g, m, x)
    w = w - lr * sqrt(s) * y / (sqrt(abs(m)) + e)
    return w, m
"""
    if kind == "compiled":
        Opt = dsl.to_optimizer(src)
    else:
        Opt = load_export(src, "Found", tmp_path, "found_opt")[0]
    p = make_params()
    with pytest.raises(ValueError, match=r"invalid b 1\.2: must be in \[0, 1\] \(used as interp's weight\)"):
        Opt(p, b=1.2)
    with pytest.raises(ValueError, match=r"invalid s -1\.0: must be in \[0, inf\) \(used under sqrt\)"):
        Opt(p, s=-1.0)
    with pytest.raises(ValueError, match=r"invalid e -1e-06.*\(added to a non-negative denominator"):
        Opt(p, e=-1e-6)
    opt = Opt(p, x=2.0)  # x's default 1.5 is outside [0, 1]: no range derived for x
    run(opt, p, 0, 2)
    assert all(torch.isfinite(q).all() for q in p)


# ---------------------------------------------------------------------------------------------
# torch.optim features: maximize, foreach, complex, sparse
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_maximize_is_minimizing_the_negated_gradient(Opt, dtype):
    pa, pb = make_params(seed=10, dtype=dtype), make_params(seed=10, dtype=dtype)
    oa = Opt(pa, lr=1e-2, weight_decay=0.01, maximize=True)
    ob = Opt(pb, lr=1e-2, weight_decay=0.01)
    assert oa.param_groups[0]["maximize"] is True
    for t in range(4):
        set_grads(pa, t, 10)
        set_grads(pb, t, 10)
        for p in pb:
            p.grad = -p.grad
        oa.step()
        ob.step()
    for a, b in zip(pa, pb):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_foreach_false_runs_parameter_by_parameter_with_the_same_result(Opt, dtype):
    pa, pb = make_params(seed=11, dtype=dtype), make_params(seed=11, dtype=dtype)
    oa = Opt(pa, lr=1e-2, foreach=False)
    ob = Opt(pb, lr=1e-2, foreach=True)
    for a, b in zip(run(oa, pa, 0, 4, 11), run(ob, pb, 0, 4, 11)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_parameters_are_their_real_view(Opt, dtype):
    """A complex parameter steps exactly like the real parameter ``view_as_real`` gives."""
    real = [torch.randn(s + (2,), generator=torch.Generator().manual_seed(12), dtype=torch.float64)
            for s in [(3, 2), (4,)]]
    pc = [torch.view_as_complex(r.clone()).to(dtype).requires_grad_() for r in real]
    pr = [torch.view_as_real(p.detach().clone()).requires_grad_() for p in pc]
    oc = Opt(pc, lr=1e-2, weight_decay=0.01)
    orr = Opt(pr, lr=1e-2, weight_decay=0.01)
    for t in range(4):
        set_grads(pc, t, 12)
        for c, r in zip(pc, pr):
            r.grad = torch.view_as_real(c.grad.clone())
        oc.step()
        orr.step()
    for c, r in zip(pc, pr):
        assert c.dtype == dtype
        assert torch.equal(torch.view_as_real(c.detach()), r.detach())
        for name in Opt.STATE:
            if getattr(Opt, "PER_PARAM", False) and not oc.state[c][name].is_complex():
                # a shaped state (row, col, matrix, scalar) of the real view is real
                assert torch.equal(oc.state[c][name], orr.state[r][name])
                continue
            assert oc.state[c][name].dtype == dtype
            assert torch.equal(torch.view_as_real(oc.state[c][name]), orr.state[r][name])


def test_sparse_gradients_are_refused(Opt):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = Opt(emb.parameters(), lr=1e-2)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()


def test_compiled_and_exported_agree_on_every_feature(export_dir):
    """maximize, foreach=False, complex and bfloat16 parameters, two groups: the compiled
    and the exported class end in the same place (to rounding: their scalars are computed
    by numpy and torch respectively)."""
    for rule in RULES:
        out = []
        for kind in KINDS:
            Opt = make_class(rule, kind, export_dir)
            cplx = torch.randn(3, 2, generator=torch.Generator().manual_seed(15), dtype=torch.complex128)
            params = make_params(seed=13) + [cplx.requires_grad_()] + make_params(seed=14, dtype=torch.bfloat16)[:1]
            opt = Opt([{"params": params[:2], "maximize": True}, {"params": params[2:], "foreach": False}],
                      lr=1e-2, weight_decay=0.01)
            out.append(run(opt, params, 0, 5, 13))
        for a, b in zip(*out):
            tol = dict(rtol=1e-2, atol=1e-2) if a.dtype == torch.bfloat16 else dict(rtol=1e-11, atol=1e-12)
            torch.testing.assert_close(a, b, **tol)


# ---------------------------------------------------------------------------------------------
# numbers: against torch.optim, and Lion against its formula
# ---------------------------------------------------------------------------------------------

def _torch_twin(rule: str, params, lr, wd, maximize, foreach, extra):
    common = dict(lr=lr, weight_decay=wd, maximize=maximize, foreach=foreach)
    if rule == "adamw":
        return torch.optim.AdamW(params, betas=(0.9, 0.999), eps=1e-8, **common)
    if rule == "adam":
        return torch.optim.Adam(params, betas=(0.9, 0.999), eps=1e-8, **common)
    if rule == "sgd":
        return torch.optim.SGD(params, **common)
    if rule == "sgd_momentum":
        return torch.optim.SGD(params, momentum=0.9, **common)
    if rule == "nesterov":
        return torch.optim.SGD(params, momentum=0.9, nesterov=True, **common)
    if rule == "rmsprop":
        return torch.optim.RMSprop(params, alpha=0.99, eps=1e-8, **common)
    if rule == "adagrad":
        return torch.optim.Adagrad(params, eps=1e-10, lr_decay=extra.get("lr_decay", 0.0), **common)
    raise KeyError(rule)


TORCH_RULES = ["adamw", "adam", "sgd", "sgd_momentum", "nesterov", "rmsprop", "adagrad"]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6),
       torch.bfloat16: dict(rtol=0.05, atol=0.02)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", TORCH_RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_matches_torch_optim(rule, kind, dtype, export_dir):
    """Every configuration that maps: weight decay on and off, maximize, foreach on and off,
    a second group with its own lr, Adagrad's lr_decay; 12 steps with a checkpoint
    round trip after 5 (the torch side is not reloaded)."""
    Opt = make_class(rule, kind, export_dir)
    configs = [dict(wd=0.0, maximize=False, foreach=True), dict(wd=0.05, maximize=True, foreach=False)]
    if rule == "adagrad":
        configs.append(dict(wd=0.01, maximize=False, foreach=None, lr_decay=0.05))
    for cfg in configs:
        extra = {k: v for k, v in cfg.items() if k == "lr_decay"}
        ref_params = make_params(seed=16, dtype=dtype)
        params = clone_params(ref_params)
        groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 2e-2}]  # noqa: E731
        ref = _torch_twin(rule, groups(ref_params), 1e-2, cfg["wd"], cfg["maximize"], cfg["foreach"], extra)
        opt = Opt(groups(params), lr=1e-2, weight_decay=cfg["wd"], maximize=cfg["maximize"],
                  foreach=cfg["foreach"], **extra)
        want = run(ref, ref_params, 0, 12, 16)
        run(opt, params, 0, 5, 16)
        params2 = clone_params(params)
        opt2 = Opt(groups(params2))
        opt2.load_state_dict(roundtrip(opt.state_dict()))
        got = run(opt2, params2, 5, 12, 16)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["adamw", "adam", "rmsprop", "adagrad", "sgd_momentum"])
def test_complex_matches_torch_optim(rule, kind, export_dir):
    Opt = make_class(rule, kind, export_dir)
    gen = torch.Generator().manual_seed(17)
    ref_params = [torch.randn(s, generator=gen, dtype=torch.complex128).requires_grad_() for s in [(3, 2), (4,)]]
    params = clone_params(ref_params)
    ref = _torch_twin(rule, ref_params, 1e-2, 0.01, False, False, {})
    opt = Opt(params, lr=1e-2, weight_decay=0.01)
    for a, b in zip(run(opt, params, 0, 8, 17), run(ref, ref_params, 0, 8, 17)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lion_matches_its_formula(kind, dtype, export_dir):
    """Chen et al. 2023, Algorithm 2 (decoupled weight decay), written out by hand."""
    Opt = make_class("lion", kind, export_dir)
    lr, wd, b1, b2 = 1e-2, 0.1, 0.9, 0.99
    params = make_params(seed=18, dtype=dtype)
    ref = [p.detach().clone() for p in params]
    moms = [torch.zeros_like(p) for p in ref]
    opt = Opt(params, lr=lr, weight_decay=wd, beta1=b1, beta2=b2)
    for t in range(10):
        set_grads(params, t, 18)
        grads = [p.grad.clone() for p in params]
        opt.step()
        for i, (w, m, g) in enumerate(zip(ref, moms, grads)):
            c = b1 * m + (1 - b1) * g
            ref[i] = w - lr * (torch.sign(c) + wd * w)
            moms[i] = b2 * m + (1 - b2) * g
    tol = TOL[dtype]
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach(), r, **tol)
    for p, m in zip(params, moms):
        torch.testing.assert_close(opt.state[p]["m"], m, **tol)


def test_library_ranges_name_hyperparameters_and_hold_the_defaults():
    assert set(RANGES) == set(RULES)
    for rule in RULES:
        prog = dsl.get_rule(rule)
        assert set(RANGES[rule]) <= set(prog.hyperparams), rule
        for h, rs in dsl.hyper_ranges(prog).items():
            value = {"lr": 1e-3, "weight_decay": 0.0}.get(h, prog.hyperparams.get(h))
            assert all(r.contains(float(value)) for r in rs), (rule, h)
    with pytest.raises(ValueError, match="interval"):
        dsl.ranges.parse_range("0..1", "bad")
