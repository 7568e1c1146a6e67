"""Checker: kinds, loop-carried liveness, unused inputs, warnings; reported, never refused."""
import pytest

import dsl
from dsl import DSLError, check, check_source, get_rule, parse
from dsl.program import Assign, Name, Program
from dsl_cases import DEAD_STATE


def test_kinds_of_every_name():
    r = check_source("""def f(w, g, m, lr, step, beta=0.9):
    c = 1 - beta ** step
    n = norm(g)
    m = interp(g, m, beta)
    u = m / c / n
    w = w - lr * u
    return w, m
""")
    assert r.kinds == {"w": "tensor", "g": "tensor", "m": "tensor", "lr": "scalar", "step": "scalar",
                       "beta": "scalar", "c": "scalar", "n": "scalar", "u": "tensor"}
    assert r.statement_kinds == ("scalar", "scalar", "tensor", "tensor", "tensor")
    assert r.clean


def test_library_rules_are_clean():
    for name in dsl.list_rules():
        assert check(get_rule(name)).clean, name


def test_state_overwritten_by_next_step_is_dead_with_its_statement():
    """The Lion paper's 'cosh' line: v is recomputed from scratch before any read."""
    r = check_source(DEAD_STATE)
    assert [(d.line, d.target) for d in r.dead] == [(5, "v")]
    assert "next step" in r.dead[0].reason
    assert r.dead_states == ("v",)
    assert r.unused_inputs == ("v",)
    assert any("'v' is not carried" in w for w in r.warnings)


def test_state_that_only_feeds_itself_is_dead():
    r = check_source("""def f(w, g, m, lr):
    m = 0.9 * m + g
    w = w - lr * g
    return w, m
""")
    assert [d.target for d in r.dead] == ["m"]
    assert r.dead_states == ("m",) and "m" in r.unused_inputs


def test_liveness_propagates_through_a_chain_of_states():
    """w reads v, v is carried from m, m from g: needs three rounds of the fixed point."""
    r = check_source("""def f(w, g, m, v, lr):
    w = w - lr * v
    v = m
    m = g
    return w, m, v
""")
    assert not r.dead and not r.dead_states and not r.unused_inputs


def test_overwritten_in_the_same_step_and_read_only_by_dead_code():
    src = """def f(w, g, lr):

    x = g
    y = x * 2
    x = 3 * g
    w = w - lr * x
    return w
"""
    r = check_source(src)
    assert [(d.line, d.target) for d in r.dead] == [(3, "x"), (4, "y")]
    assert r.dead[0].reason == "read only by dead code"
    assert r.dead[1].reason == "result never used"
    r2 = check_source("def f(w, g):\n    x = g\n    x = 2 * g\n    w = w - x\n    return w\n")
    assert r2.dead[0].reason == "overwritten at line 3 before it is read"


def test_unused_inputs_and_warnings():
    r = check_source("""def f(w, g, m, lr, wd, step, eps=1e-8):
    w = w - m * lr
    z = log(0) + eps
    return w, m
""")
    assert r.unused_inputs == ("g", "wd", "step", "eps")
    text = "\n".join(r.warnings)
    assert "does not depend on the gradient" in text
    assert "'m' is never assigned" in text
    assert "hyperparameter 'eps'" in text
    assert "'wd'" in text and "'step'" in text
    assert "'log(0)' is always -inf" in text
    assert not r.clean


def test_w_never_updated_warns():
    r = check_source("def f(w, g, m):\n    m = g\n    return w, m\n")
    assert any("w is never updated" in w for w in r.warnings)
    assert r.dead_states == ("m",)


def test_summary_lists_findings():
    r = check_source("def f(w, g, lr):\n    x = g\n    w = w - lr * g\n    return w\n")
    s = r.summary()
    assert "line 2: x = g" in s and "result never used" in s and "kinds:" in s


def test_check_source_raises_dsl_error():
    with pytest.raises(DSLError) as ei:
        check_source("def f(w, g):\n    w = w - q\n    return w\n")
    assert ei.value.line == 2


def test_check_refuses_invalid_programs_built_in_code():
    good = parse("def f(w, g):\n    w = w - g\n    return w\n")
    unbound = good.replace(body=(Assign("w", Name("q")),))
    with pytest.raises(DSLError, match="before it is assigned"):
        check(unbound)
    bad_name = good.replace(body=(Assign("w", Name("g.data")),))
    with pytest.raises(DSLError):
        check(bad_name)
    wrong_return = Program("f", good.args, good.body, ("g",))
    with pytest.raises(DSLError, match="wrong return"):
        check(wrong_return)
