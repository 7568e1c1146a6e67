"""Parser: the security boundary. Every refusal is a DSLError naming where and what instead."""
import pytest

import dsl
from dsl import DSLError, parse
from support import ADAMW  # the library's AdamW text


def test_signature_views():
    p = parse(ADAMW)
    assert p.state_names == ("m", "v")
    assert p.hyperparams == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert p.returns == ("w", "m", "v")


def test_round_trip_canonical_source():
    p = parse(ADAMW)
    assert parse(p.source()) == p
    assert parse(p.source()).source() == p.source()


@pytest.mark.parametrize("src", [
    "def f(w, g):\n    w = w - (-2) ** g + g ** (-1) - -g - (-(g * 2))\n    return w\n",
    "def f(w, g):\n    w = (w - g) - (w - g) / (w * g) ** 2 ** 3\n    return w\n",
    "def f(w, g, a=-0.5):\n    w = w * a - -a * (g - -1.5)\n    return w\n",
])
def test_round_trip_tricky_precedence(src):
    p = parse(src)
    assert parse(p.source()) == p


@pytest.mark.parametrize("src, fragment", [
    ("import os", "only one function"),
    ("def f(w, g):\n    x = w.data\n    return w\n", "attributes"),
    ("def f(w, g):\n    x = g[0]\n    return w\n", "subscripts"),
    ("def f(w, g):\n    x = 'a'\n    return w\n", "numeric literal"),
    ("def f(w, g):\n    x = lambda: 1\n    return w\n", "lambda"),
    ("def f(w, g):\n    if g:\n        w = g\n    return w\n", "If statements are not allowed"),
    ("def f(w, g):\n    w = cosh(g)\n    return w\n", "unknown function 'cosh'"),
    ("def f(w, g):\n    w = w - u\n    return w\n", "used before it is assigned"),
    ("def f(w, g, m):\n    return w\n", "expected 'return w, m'"),
    ("def f(w, g, m):\n    w = w - g\n", "must end with"),
    ("def f(w):\n    return w\n", "must include 'g'"),
    ("def f(w, g, lr=1):\n    return w\n", "cannot have a default"),
    ("def f(w, g, b=0.9):\n    b = 2\n    return w\n", "read-only"),
    ("def f(w, g):\n    w = sign(g, g)\n    return w\n", "takes 1 argument"),
    ("def f(w, g):\n    w = 1\n    return w\n", "must be a tensor"),
    ("def f(w, g, lr):\n    w = w - orthogonalize(lr)\n    return w\n", "needs a tensor"),
    ("def f(w, g):\n    w = __import__('os')\n    return w\n", "unknown function"),
    ("def f(w, g):\n    w = w - 1e999 * g\n    return w\n", "finite"),
    ("(((", "syntax error"),
    ("x" * 30000, "too long"),
])
def test_refusals_name_the_problem(src, fragment):
    with pytest.raises(DSLError) as ei:
        parse(src)
    assert fragment in str(ei.value)


def test_refusal_has_line_and_column():
    with pytest.raises(DSLError) as ei:
        parse("def f(w, g):\n    w = w - g\n    x = w.data\n    return w\n")
    assert ei.value.line == 3 and ei.value.col >= 1


def test_second_function_is_refused_at_its_line():
    src = ADAMW + "\n\ndef helper(w, g):\n    return w\n"
    with pytest.raises(DSLError, match="second 'def helper'") as e:
        parse(src)
    assert e.value.line == src.splitlines().index("def helper(w, g):") + 1
    assert str(e.value).startswith(f"line {e.value.line}, col 1: ")
    with pytest.raises(DSLError, match="found none"):
        parse('"""only a docstring"""\n')


def test_size_limits():
    deep = "g" + " + g" * 200
    with pytest.raises(DSLError, match="too large"):
        parse(f"def f(w, g):\n    w = {deep}\n    return w\n")
    many = "".join(f"    x{i} = g\n" for i in range(100))
    with pytest.raises(DSLError, match="too many statements"):
        parse(f"def f(w, g):\n{many}    return w\n")


def test_augassign_and_docstring_accepted():
    p = parse('def f(w, g, lr):\n    """sgd"""\n    w -= lr * g\n    return w\n')
    assert p.source() == "def f(w, g, lr):\n    w = w - lr * g\n    return w\n"


def test_reference_text_lists_every_primitive():
    text = dsl.reference_text()
    assert all(name in text for name in dsl.PRIMITIVES)
