"""fingerprint: equal for the same function however written, different for different functions."""
import re

import pytest

from dsl import fingerprint, get_rule, parse, simplify
from dsl.fingerprint import trajectory
from support import ADAMW  # the library's AdamW text

# the same function: renamed everything, states swapped in the signature, independent statements
# reordered, identities, a dead state and dead code added
ADAMW_REWRITTEN = """def other(w, g, second, first, dead, wd, lr, step, eps=1e-8, b2=0.999, b1=0.9):
    second = interp(square(g), second, b2 * 1)
    first = interp(g, first, b1 + 0)
    dead = exp(first)
    decay = 1 - lr * wd
    w = w * decay
    unused = tanh(second)
    w = w - lr * ((first / (1 - b1 ** step)) / (sqrt(second / (1 - b2 ** step)) + eps))
    return w, second, first, dead
"""


def test_format():
    fp = fingerprint(parse(ADAMW))
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint(ADAMW) == fp  # text is parsed first


def test_same_function_same_fingerprint():
    assert fingerprint(ADAMW_REWRITTEN) == fingerprint(ADAMW)
    assert fingerprint(simplify(parse(ADAMW_REWRITTEN))) == fingerprint(ADAMW)


@pytest.mark.parametrize("change", [
    ("eps=1e-8", "eps=1e-9"),                          # a hyperparameter default
    ("beta2=0.999", "beta2=0.99"),
    ("beta1=0.9,", "beta1=0.8,"),
    ("w = w * (1 - lr * wd)", "w = w * (1 - 0.1 * wd)"),  # lr written as a number
    ("interp(g * g, v, beta2)", "interp(g * g, v, beta1)"),  # the states' roles
    ("(m / (1 - beta1 ** step))", "m"),              # bias correction
    ("+ eps)", "+ eps * 2)"),
])
def test_different_function_different_fingerprint(change):
    assert fingerprint(ADAMW.replace(*change)) != fingerprint(ADAMW)


def test_state_roles_matter_but_not_their_names_or_positions():
    swapped_roles = """def f(w, g, m, v, lr):
    m = interp(g, m, 0.9)
    v = interp(g, v, 0.5)
    w = w - lr * (m - 2 * v)
    return w, m, v
"""
    other_roles = swapped_roles.replace("w - lr * (m - 2 * v)", "w - lr * (v - 2 * m)")
    renamed = swapped_roles.replace("m", "a").replace("v", "m").replace("a", "v")
    reordered = swapped_roles.replace("g, m, v, lr", "g, v, m, lr").replace("return w, m, v", "return w, v, m")
    assert fingerprint(other_roles) != fingerprint(swapped_roles)
    assert fingerprint(renamed) == fingerprint(swapped_roles) == fingerprint(reordered)


def test_matrix_primitives_are_exercised():
    base = "def f(w, g, lr):\n    w = w - lr * {}\n    return w\n"
    fps = {fingerprint(base.format(e)) for e in ["g", "orthogonalize(g)", "row_normalize(g)",
                                                 "col_normalize(g)", "g / norm(g)", "g / rms(g)"]}
    assert len(fps) == 6


def test_library_and_nonfinite_rules_are_stable_and_distinct():
    lib = {fingerprint(get_rule(n)) for n in ["sgd", "adam", "adamw", "lion", "muon"]}
    nan_rule = "def f(w, g):\n    w = w + sqrt(-1 - g * g)\n    return w\n"
    inf_rule = "def f(w, g):\n    w = w + 1 / (g - g)\n    return w\n"
    assert fingerprint(nan_rule) == fingerprint(nan_rule.replace("g * g", "square(g)"))
    assert len(lib | {fingerprint(nan_rule), fingerprint(inf_rule)}) == 7


def test_trajectory_is_the_updates_of_both_shapes():
    traj = trajectory(parse("def f(w, g, lr):\n    w = w - lr * g\n    return w\n"))
    assert len(traj) == 6 and traj[0].shape == (7,) and traj[3].shape == (5, 4)
    assert all(abs(d).max() > 0 for d in traj)
