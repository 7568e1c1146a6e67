"""Random mutation operators and LLM reply extraction: every child is a valid, canonical program."""
from __future__ import annotations

import random

import pytest

import dsl
from dsl import library
from search.core import InvalidCandidate
from search.rules import DEFAULT_WEIGHTS, MUTATIONS, RuleKind, mutate, perturb
from search.rules.llm_ops import extract_candidates, extract_program

RULES = list(library.RULES)


@pytest.mark.parametrize("op", sorted(MUTATIONS))
def test_each_operator_yields_parseable_canonical_changed_programs(op):
    made = 0
    for name in RULES:
        parent = dsl.get_rule(name)
        for seed in range(15):
            child = mutate(parent, op, random.Random(seed))
            if child is None:
                continue
            made += 1
            src = child.source()
            assert dsl.parse(src) == child            # re-parses to the same program
            assert dsl.parse(src).source() == src     # canonical text is a fixed point
            assert src != parent.source()             # it changed something
            dsl.check(child)                          # the checker accepts it
    assert made >= 30, f"operator {op} rarely applies ({made} children)"


def test_long_random_walks_stay_valid():
    rng = random.Random(1)
    ops = sorted(MUTATIONS)
    kind = RuleKind()
    for name in ("sgd_momentum", "adamw", "lion", "muon"):
        prog = dsl.get_rule(name)
        for _ in range(100):
            child = mutate(prog, rng.choice(ops), rng)
            if child is None:
                continue
            assert dsl.parse(child.source()) == child
            try:
                kind.normalize(child.source())
                prog = child                          # walk on through usable programs
            except InvalidCandidate:
                pass
        assert len(prog.body) <= 64


def test_operators_can_be_told_to_refuse_useless_children():
    kind = RuleKind()

    def usable(p):
        try:
            kind.normalize(p.source())
            return True
        except InvalidCandidate:
            return False

    parent = dsl.get_rule("sgd_momentum")
    for seed in range(40):
        child = mutate(parent, "delete", random.Random(seed), accept=usable)
        if child is not None:
            assert usable(child)


def test_normalize_refuses_rules_that_ignore_the_gradient_or_never_move_w():
    kind = RuleKind()
    with pytest.raises(InvalidCandidate, match="gradient"):
        kind.normalize("def r(w, g, lr):\n    w = w - lr * w\n    return w\n")
    with pytest.raises(InvalidCandidate, match="never changes w"):
        kind.normalize("def r(w, g, m, lr):\n    m = g\n    return w, m\n")
    with pytest.raises(InvalidCandidate, match="line"):
        kind.normalize("def r(w, g):\n    import os\n    return w\n")


def test_normalize_refuses_a_step_that_ignores_the_tuned_lr():
    """A fixed step next to the tuned one (found by searches that exploit lr-only tuning) is
    refused; steps bounded by lr, decoupled decay and every library rule pass."""
    from search.rules import moves_without_lr
    kind = RuleKind()
    fixed = ("def r(w, g, buf, lr, momentum=0.9):\n    buf = momentum * buf + g\n    w = w - g\n"
             "    w = w - lr * buf\n    return w, buf\n")
    with pytest.raises(InvalidCandidate, match="at lr = 0"):
        kind.normalize(fixed)
    with pytest.raises(InvalidCandidate, match="at lr = 0"):   # weight decay that ignores lr
        kind.normalize("def r(w, g, lr, wd):\n    w = w * (1 - wd) - lr * g\n    return w\n")
    clipped = ("def r(w, g, buf, lr):\n    buf = 0.8 * buf + g\n    buf = clip(buf, lr)\n    w = w - buf\n"
               "    return w, buf\n")
    assert kind.normalize(clipped)
    assert not any(moves_without_lr(dsl.get_rule(n)) for n in dsl.list_rules())


def test_constant_perturbation_is_log_scale_and_keeps_betas_below_one():
    rng = random.Random(0)
    betas = [perturb(0.999, rng) for _ in range(300)]
    assert all(0 < b < 1 for b in betas)
    assert min(betas) < 0.999 < max(betas)                  # both directions happen
    big = [perturb(2.0, rng) for _ in range(300)]
    pos = [b for b in big if b > 0]
    assert len(pos) > 250 and min(pos) < 1.0 < 4.0 < max(pos)


def test_constant_mutation_only_touches_live_hyperparameters():
    # 'unused' is never read: changing it would make a functional duplicate
    prog = dsl.parse("def r(w, g, lr, unused=0.5):\n    w = w - lr * g\n    return w\n")
    assert mutate(prog, "constant", random.Random(0)) is None


def test_default_weights_cover_every_operator():
    assert set(DEFAULT_WEIGHTS) == set(MUTATIONS)


# -- LLM reply extraction (text only; nothing is executed) ---------------------------------

GOOD = "def r(w, g, m, lr, beta=0.9):\n    m = interp(g, m, beta)\n    w = w - lr * sign(m)\n    return w, m\n"


def test_extract_fenced_block_with_prose_around():
    reply = f"Sure! Here is a better rule:\n```python\n{GOOD}```\nIt uses the sign of momentum."
    text, why = extract_program(reply, RuleKind().normalize)
    assert why == "" and text == dsl.parse(GOOD).source()


def test_extract_prefers_the_last_block_and_survives_an_unclosed_fence():
    parent = "def p(w, g, lr):\n    w = w - lr * g\n    return w\n"
    reply = f"The parent was:\n```python\n{parent}```\nMine:\n```python\n{GOOD}```"
    assert extract_candidates(reply)[0].startswith("def r(")
    text, _ = extract_program(f"```python\n{GOOD}", RuleKind().normalize)   # no closing fence
    assert text is not None
    text, _ = extract_program(f"blah\n    {GOOD.replace(chr(10), chr(10) + '    ')}", RuleKind().normalize)
    assert text is not None                                                  # bare, indented def


@pytest.mark.parametrize("reply,needle", [
    ("", "no code"),
    ("I cannot help with that.", "no code"),
    ("```python\nimport os\nos.system('rm -rf /')\n```", "no code"),  # no def at all
    ("```python\ndef r(w, g):\n    import os\n    return w\n```", "Import"),
    ("```python\ndef r(w, g, lr):\n    w = w.sub_(lr * g)\n    return w\n```", "attribute"),
    ("```python\ndef r(w, g, lr):\n    w = w - lr * g\n```", "return"),
])
def test_garbage_replies_are_refused_with_a_reason(reply, needle):
    text, why = extract_program(reply, RuleKind().normalize)
    assert text is None
    assert needle.lower() in why.lower()
